"""The built wheel in a fresh environment beside configobj 5.0.9, whose top-level `validate` package
shares its name with this project's validate/ folder: installed, ours is `msn_deploy.validate`, so
both import, both run, and removing one leaves the other whole. Run outside the checkout, so that
nothing is imported from the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.build

WHEELHOUSE = REPO / ".whl"  # configobj's wheel, put there by .ci/setup.sh
PACKAGES = ["msn", "export", "engines", "validate"]


def run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the sources (a build writes build/ beside them)."""
    src = tmp_path_factory.mktemp("src")
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "cpp"))
    out = tmp_path_factory.mktemp("dist")
    done = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src], src)
    assert done.returncode == 0, done.stderr
    return next(out.glob("msn_deploy-*.whl"))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel) -> Path:
    """A new virtual environment with the wheel and configobj; the project's dependencies (torch,
    numpy, ...) come from this interpreter's site-packages through a path file, which adds the
    folder only: the editable install of the checkout that lives there is not loaded."""
    configobj = sorted(WHEELHOUSE.glob("configobj-5.0.9-*.whl"))
    if not configobj:
        pytest.skip(f"no configobj 5.0.9 wheel in {WHEELHOUSE} (run .ci/setup.sh)")
    env = tmp_path_factory.mktemp("fresh") / "env"
    done = run([sys.executable, "-m", "venv", "--without-pip", env], env.parent)
    assert done.returncode == 0, done.stderr
    python = env / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    done = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
                wheel, configobj[0]], env.parent)
    assert done.returncode == 0, done.stderr
    return env


def test_the_wheel_installs_nothing_at_the_top_level_but_msn_deploy(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"msn_deploy"}
    assert "msn_deploy/engines/web/page/index.html" in zipfile.ZipFile(wheel).namelist()


def test_both_import_and_run_side_by_side(fresh, tmp_path, photo, random_ckpt):
    python = fresh / "bin" / "python"
    probe = ("import validate, msn_deploy.validate, msn_deploy.engines\n"
             "from validate import Validator\n"
             "assert Validator().check('integer(min=1)', '3') == 3\n"
             "print(validate.__file__); print(msn_deploy.validate.__file__); print(msn_deploy.engines.__file__)")
    done = run([python, "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    theirs, ours, engines = done.stdout.split()
    assert theirs.startswith(str(fresh)) and theirs.endswith("validate/__init__.py"), done.stdout
    assert ours.startswith(str(fresh)) and engines.startswith(str(fresh)), done.stdout  # not the checkout

    helped = run([fresh / "bin" / "msn-upscale", "--help"], tmp_path)
    assert helped.returncode == 0 and "usage: msn-upscale" in helped.stdout, helped.stderr
    out = tmp_path / "out.png"
    upscaled = run([fresh / "bin" / "msn-upscale", photo, "-o", out, "--model", random_ckpt, "--backend", "torch"],
                   tmp_path)
    assert upscaled.returncode == 0, upscaled.stderr
    width, height = run([python, "-c", f"from PIL import Image; print(*Image.open({str(out)!r}).size)"],
                        tmp_path).stdout.split()
    assert (int(width), int(height)) == (48 * 4, 40 * 4)


def test_removing_one_leaves_the_other(fresh, tmp_path):
    python = fresh / "bin" / "python"
    done = run([sys.executable, "-m", "pip", "--python", python, "uninstall", "-y", "-q", "msn-deploy"], tmp_path)
    assert done.returncode == 0, done.stderr
    kept = run([python, "-c", "from validate import Validator; import importlib.util as u; "
                "print(u.find_spec('msn_deploy.engines'))"], tmp_path)
    assert kept.returncode == 0 and kept.stdout.strip() == "None", kept.stdout + kept.stderr
