"""Prepare the folder that a GPU run takes along (default .gpu-run/, git-ignored), on a machine
with the project installed and a package registry:

    python -m msn_deploy.validate.validator.prepare_gpu_run                 # ../shared beside the checkout
    python -m msn_deploy.validate.validator.prepare_gpu_run --shared DIR --out .gpu-run --no-wheels

GPU machines lent for a few minutes often have torch but no registry, and only the repository
travels there. So this copies the checkpoint and the float64 reference photos out of the shared
folder, copies the FP32 and FP16 ONNX graphs from this machine's graph cache (exporting them
there first if need be: the exporter needs onnxsim, which such a machine lacks), and downloads
the cp312 manylinux wheels of what the suite imports and such machines lack (PyAV for the video
rows, pypng, tqdm), which validate/validator/gpu_suite.sh unpacks at run time. It refuses (before
downloading) when the folder and the source tree together would exceed --limit-mb, and writes
MANIFEST.json with each file's sha256.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from msn_deploy.msn import MissingFileError, MSNError, sha256_of
from msn_deploy.msn.checkpoint import KNOWN_CHECKPOINTS, ChecksumError
from msn_deploy.msn.cli import positive_int, run_cli
from msn_deploy.msn.files import atomic_write_bytes, make_output_folder
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS
from msn_deploy.validate.validator.gpu_suite import CHECKPOINT, REFERENCES

log = logging.getLogger("msn.prepare_gpu_run")

REPO = Path(__file__).resolve().parents[2]
# What the suite imports and such machines lack: PyAV for the video rows, pypng and tqdm for the
# image and video modules (checked by running the suite with every other package hidden).
WHEELS = {"av": "19.*", "pypng": "0.20220715.0", "tqdm": "4.*"}
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"]
WHEELS_MB = 40  # about what those wheels weigh (av: 35 MB), for the check before downloading
GRAPHS_MB = 1  # the FP32 and FP16 graphs (0.4 and 0.3 MB)


class TooLarge(MSNError):
    """What would travel is over the transfer limit (exit 1)."""


def tree_mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def source_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return [REPO / name for name in listed]


def prepare(shared: Path, out: Path, *, wheels: bool = True, graphs: bool = True, limit_mb: int = 64) -> dict:
    """Fill `out` with what the suite reads; return its manifest."""
    checkpoint, references = shared / CHECKPOINT, shared / REFERENCES
    if not checkpoint.is_file():
        raise MissingFileError(f"{checkpoint} does not exist; pass --shared with the folder holding "
                               f"{CHECKPOINT} and {REFERENCES}/")
    if not references.is_dir():
        raise MissingFileError(f"{references} does not exist; pass --shared with the folder holding {REFERENCES}/")
    expected = KNOWN_CHECKPOINTS["official"].sha256
    if sha256_of(checkpoint) != expected:  # the suite's figures would be of other weights
        raise ChecksumError(f"{checkpoint} is not the official MSN checkpoint (sha256 {sha256_of(checkpoint)[:16]}..., "
                            f"expected {expected[:16]}...); put the official file there")
    # Before anything is written: what would travel (graphs and wheels by their usual weight).
    expected_mb = (tree_mb(source_files()) + tree_mb([checkpoint, *references.rglob("*")])
                   + (GRAPHS_MB if graphs else 0) + (WHEELS_MB if wheels else 0))
    if expected_mb > limit_mb:
        raise TooLarge(f"the source tree and the take-along folder would be about {expected_mb:.0f} MiB, over the "
                       f"{limit_mb} MiB that travels; use --no-wheels / --no-graphs or remove files from the tree")
    make_output_folder(out)
    (out / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, out / CHECKPOINT)
    shutil.copytree(references, out / REFERENCES, dirs_exist_ok=True, copy_function=shutil.copyfile)
    if graphs:
        from msn_deploy.engines.runtime.graph_cache import cached_graph

        (out / "graphs").mkdir(exist_ok=True)
        for precision in ARTIFACT_PRECISIONS:
            shutil.copyfile(cached_graph(checkpoint, precision), out / "graphs" / f"msn_x4_{precision}.onnx")
    if wheels:
        (out / "wheels").mkdir(exist_ok=True)
        for package, version in WHEELS.items():
            log.info("downloading the cp312 wheel of %s %s", package, version)
            subprocess.run([sys.executable, "-m", "pip", "download", f"{package}=={version}", "--only-binary=:all:",
                            "--no-deps", *WHEEL_TARGET, "-d", str(out / "wheels"), "-q"], check=True)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    total_mb = tree_mb(source_files()) + tree_mb(files)
    if total_mb > limit_mb:
        raise TooLarge(f"the source tree and {out} are {total_mb:.1f} MiB, over the {limit_mb} MiB that travels")
    manifest = {"files": {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
                          for p in files}, "with_source_tree_mb": round(total_mb, 1)}
    atomic_write_bytes(out / "MANIFEST.json", json.dumps(manifest, indent=2).encode())
    log.info("prepared %s: %d files, %.1f MiB with the source tree (limit %d MiB)", out, len(files), total_mb,
             limit_mb)
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m msn_deploy.validate.validator.prepare_gpu_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                   help=f"folder with {CHECKPOINT} and {REFERENCES}/ (default ../shared)")
    p.add_argument("--out", type=Path, default=REPO / ".gpu-run", help="the take-along folder (default .gpu-run)")
    p.add_argument("--no-wheels", dest="wheels", action="store_false",
                   help="no wheels: for machines that have PyAV, pypng and tqdm installed")
    p.add_argument("--no-graphs", dest="graphs", action="store_false", help="no ONNX graphs")
    p.add_argument("--limit-mb", type=positive_int, default=64, help="what may travel, with the source tree")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: prepare(args.shared, args.out, wheels=args.wheels, graphs=args.graphs,
                                   limit_mb=args.limit_mb) and None, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
