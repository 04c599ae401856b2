"""The package layers import downwards only: msn <- export <- engines <- validate.

Read from the source (every import statement, at any depth, including lazy ones inside
functions), so that an upward import fails here however it is written.
"""

from __future__ import annotations

import ast
import re
import tomllib

import pytest

from tests.conftest import REPO

LAYERS = ["msn", "export", "engines", "validate"]
PROJECT = "msn_deploy"  # what an install puts the four folders under (pyproject.toml)


def project_name(name: str) -> str:
    """A module of this project by its folder path (`msn_deploy.engines.jobs` -> `engines.jobs`)."""
    return name.removeprefix(f"{PROJECT}.")


def imported_modules(path) -> set[str]:
    """Every module of this project `path` imports, at any depth, named from its folder: `import
    msn_deploy.a.b` gives a.b; `from msn_deploy.a.b import c` gives a.b and a.b.c (c may be a module);
    `from msn_deploy.a import b` gives a.b only; `from msn_deploy import a` gives a (the package face)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {project_name(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == PROJECT:
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = project_name(node.module)
            top_level = "." not in module  # `from msn_deploy.engines import runtime` imports the room, not the face
            names |= ({module} - ({module} if top_level and module in LAYERS else set())
                      | {f"{module}.{alias.name}" for alias in node.names})
    return names


def bare_layer_imports(path) -> list[str]:
    """Imports of a layer by its folder name (`import engines`): installed, there is no such package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                   else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        found += [m for m in modules if m.split(".")[0] in LAYERS]
    return found


def imported_packages(path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {}
    for path in sorted((REPO / layer).rglob("*.py")):
        upward = imported_packages(path) & above
        if upward:
            offenders[str(path.relative_to(REPO))] = sorted(upward)
    assert not offenders, f"upward imports (layers are {' <- '.join(LAYERS)}): {offenders}"


def test_the_check_sees_lazy_imports(tmp_path):
    """The scanner itself: an import inside a function counts as much as one at the top."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from msn_deploy.engines.runtime.base import Engine\n    import msn_deploy.validate.validator.runner\n")
    assert imported_packages(module) == {"engines", "validate"}


def test_every_import_of_the_project_goes_through_its_installed_name():
    """Every module and test imports `msn_deploy.engines...`, never `engines...`: the checkout is
    importable that way only through an install, and an install has no top-level `engines`."""
    offenders = {str(p.relative_to(REPO)): bare for folder in [*LAYERS, "tests"]
                 for p in sorted((REPO / folder).rglob("*.py")) if (bare := bare_layer_imports(p))}
    assert not offenders, offenders


def test_the_bare_import_check_sees_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import msn_deploy.engines\ndef f():\n    from export.onnx_export import export_onnx\n")
    assert bare_layer_imports(module) == ["export.onnx_export"]


def test_the_wheel_lists_every_package_folder():
    """pyproject.toml maps the folders under msn_deploy one package at a time: a new package folder
    missing from that list would be left out of every wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {f"{PROJECT}.{'.'.join(init.parent.relative_to(REPO).parts)}"
               for layer in LAYERS for init in (REPO / layer).rglob("__init__.py")}
    assert listed == folders


def test_no_command_calls_another_commands_main():
    """Commands share library functions, never each other's main([...]) (tests may call them)."""
    calls = []
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\bmain\(\s*\[", line):
                    calls.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not calls, calls


# engines/ in rooms, each importing only the rooms before it; the command (engines/upscale.py) and
# the package's public face (engines/__init__.py) stand above them all.
ROOMS = ["runtime", "media", "jobs", "web", "serve"]


def engines_imports(path) -> set[str]:
    """The engines modules `path` imports (names as written: `engines.media.video`, `engines`)."""
    return {name for name in imported_modules(path) if name.split(".")[0] == "engines"}


def room_of(module: str) -> str | None:
    """The room of an engines module name, "" for the package itself, None for the command level."""
    parts = module.split(".")
    if parts == ["engines"]:
        return ""
    return parts[1] if parts[1] in ROOMS else None


def module_name(path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
    return ".".join(parts)


def engines_modules() -> dict[str, object]:
    return {module_name(p): p for p in sorted((REPO / "engines").rglob("*.py"))}


def test_every_room_of_engines_says_what_it_owns():
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((REPO / "engines" / room / "__init__.py").read_text()))
        assert doc, f"engines/{room}/__init__.py has no docstring saying what the room owns"


def test_a_room_imports_only_the_rooms_before_it():
    offenders = {}
    for name, path in engines_modules().items():
        room = room_of(name)
        if not room:  # the package face and the command may import every room
            continue
        allowed = set(ROOMS[: ROOMS.index(room) + 1])
        bad = sorted(m for m in engines_imports(path)
                     if room_of(m) is None or room_of(m) == "" or room_of(m) not in allowed)
        if bad:
            offenders[name] = bad
    assert not offenders, f"imports against the room order ({' < '.join(ROOMS)} < the command): {offenders}"


def test_the_modules_of_engines_import_no_cycle():
    modules = engines_modules()
    graph = {name: {m for m in engines_imports(path) if m in modules and m != name and not name.startswith(m + ".")}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                return path + [name, other]
            if other not in state:
                cycle = visit(other, path + [name])
                if cycle:
                    return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_room_check_sees_a_jobs_import_from_media(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from msn_deploy.engines.jobs.folder import FolderJob\n")
    assert engines_imports(module) == {"engines.jobs.folder", "engines.jobs.folder.FolderJob"}
    assert room_of("engines.jobs.folder") == "jobs" and room_of("engines.upscale") is None


# validate/ in rooms the same way: the core, then the benches (whole commands, services), then the
# validators (the GPU suite times the video pipeline with a bench's clip).
VALIDATE_ROOMS = ["core", "benches", "validator"]


def test_a_room_of_validate_imports_only_the_rooms_before_it():
    offenders = {}
    for path in sorted((REPO / "validate").rglob("*.py")):
        relative = path.relative_to(REPO / "validate").parts
        if len(relative) < 2:  # the package face and validate/run.py stand above the rooms
            continue
        allowed = set(VALIDATE_ROOMS[: VALIDATE_ROOMS.index(relative[0]) + 1])
        used = {m.split(".")[1] for m in imported_modules(path) if m.startswith("validate.") }
        if used - allowed:
            offenders[str(path.relative_to(REPO))] = sorted(used - allowed)
    assert not offenders, f"imports against the room order ({' < '.join(VALIDATE_ROOMS)}): {offenders}"


# What varies has one owner: backend, device and precision names are listed in the registry
# (engines/runtime/targets.py) and the precision vocabulary (msn/formats/precision.py); the TensorRT
# flavour pair in msn/formats/tensorrt.py. Elsewhere a literal list of them is a second owner.
BACKEND_NAMES = {"auto", "torch", "onnxruntime", "openvino", "tensorrt", "ncnn"}
DEVICE_NAMES = {"cpu", "cuda", "gpu", "npu", "vulkan", "tensorrt"}
PRECISION_NAMES = {"fp32", "fp16", "bf16"}
FLAVOUR_NAMES = {"tensorrt", "tensorrt_rtx"}
VOCABULARY_OWNERS = {"engines/runtime/targets.py": (BACKEND_NAMES, DEVICE_NAMES, PRECISION_NAMES),
                     "msn/formats/precision.py": (PRECISION_NAMES,), "msn/formats/tensorrt.py": (FLAVOUR_NAMES,)}


def vocabulary_lists(path) -> list[tuple[int, list[str]]]:
    """Literal tuples, lists and sets of two or more strings that all name backends, devices,
    precisions or TensorRT flavours (one vocabulary at a time)."""
    owned = VOCABULARY_OWNERS.get(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else "", ())
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(values) != len(node.elts):
                continue
            for vocabulary in (BACKEND_NAMES, DEVICE_NAMES, PRECISION_NAMES, FLAVOUR_NAMES):
                if set(values) <= vocabulary and vocabulary not in owned:
                    found.append((node.lineno, values))
                    break
    return found


def test_backend_device_precision_and_flavour_names_are_listed_once():
    offenders = {f"{p.relative_to(REPO)}:{line}": values for layer in LAYERS for p in sorted((REPO / layer).rglob("*.py"))
                 for line, values in vocabulary_lists(p)}
    assert not offenders, f"lists of names that the registry owns (engines.runtime.targets, msn.formats): {offenders}"


def test_the_vocabulary_check_sees_a_list_of_precisions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('for precision in ("fp32", "fp16"):\n    pass\nBACKENDS = ["torch", "ncnn"]\nsizes = ("x", "cpu")\n')
    assert [line for line, _ in vocabulary_lists(module)] == [1, 3]


def test_running_an_artifact_never_imports_the_exporter():
    """The runtime reads artifacts through the formats floor (msn/formats); only the graph cache,
    which exports a checkpoint's graph, imports export/."""
    offenders = {}
    for path in sorted((REPO / "engines" / "runtime").rglob("*.py")):
        if path.name != "graph_cache.py" and "export" in imported_packages(path):
            offenders[str(path.relative_to(REPO))] = sorted(m for m in imported_modules(path) if m.startswith("export"))
    assert not offenders, offenders
