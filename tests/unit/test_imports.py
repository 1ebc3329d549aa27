import ast
import subprocess
import sys
from pathlib import Path

import pytest

import autellix_engine
import autellix_engine.core

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned():
    assert set(autellix_engine.__all__) == {
        "AutellixEngine", "AutellixError", "CallResult", "CallStats", "EngineConfig",
        "EngineNotRunningError", "InvalidRequestError", "ModelError", "PolicyConfig", "Program",
        "ProgramEndedError", "ProgramSnapshot", "PromptTooLongError", "ReplicaError",
        "StreamChunk",
        "UnknownProgramError", "Usage",
    }
    for name in autellix_engine.__all__:
        assert getattr(autellix_engine, name) is not None


def test_core_and_simulator_never_import_vllm_or_torch():
    code = (
        "import sys, autellix_engine.core, autellix_workloads.sim, "
        "autellix_engine.frontend.config, autellix_engine.frontend.models; "
        "bad = [m for m in ('vllm', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_user_project_with_its_own_engine_and_workloads_modules(tmp_path):
    """Our import names must not collide with a user's top-level modules."""
    (tmp_path / "engine.py").write_text("USER = True\n")
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "__init__.py").write_text("USER = True\n")
    code = (
        "import engine, workloads; assert engine.USER and workloads.USER; "
        "from autellix_lg import AutellixChatModel; "
        "import autellix_workloads.cli, autellix_workloads.bench; "
        "from autellix_engine import AutellixScheduler; "
        "import engine as e2; assert e2.USER"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


#: Which top-level packages each one may import: a strict layering, no cycles.
ALLOWED_IMPORTS = {
    "autellix_engine": set(),
    "autellix_lg": {"autellix_engine"},
    "autellix_workloads": {"autellix_engine", "autellix_lg"},
}
FOLDERS = {"autellix_engine": "engine", "autellix_lg": "autellix_lg",
           "autellix_workloads": "workloads"}


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages of ours a module imports, at any depth (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in ALLOWED_IMPORTS}
    return found


def test_packages_import_each_other_in_one_direction_only():
    """engine <- autellix_lg <- workloads: nothing below imports what is above it."""
    wrong = []
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            bad = _imported_packages(path) - ALLOWED_IMPORTS[package] - {package}
            wrong += [f"{path.relative_to(ROOT)} imports {b}" for b in sorted(bad)]
    assert not wrong, wrong


#: Layers inside autellix_engine (folders) and the layers each may import. The
#: package's ``__init__``, ``cli`` (it launches servers and replicas) and ``testing``
#: (scheduler test harness) sit on top and may import any layer.
LAYERS = {
    "core": {"core"},  # pure: no vLLM, no torch
    "extension": {"core", "extension"},  # runs inside vLLM's processes
    "frontend": {"core", "extension", "frontend"},  # the user's process
    "server": {"core", "frontend", "server"},
}


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_engine_layer_imports_only_the_layers_below_it(layer):
    wrong = []
    for path in sorted((ROOT / "engine" / layer).rglob("*.py")):
        for module in _imported_modules(path):
            parts = module.split(".")
            if parts[0] == "autellix_engine" and (len(parts) < 2 or parts[1] not in LAYERS[layer]):
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, wrong


def test_engine_has_only_its_layers_and_the_tools_on_top():
    modules = {p.name for p in (ROOT / "engine").iterdir()
               if p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")}
    assert modules == set(LAYERS) | {"__init__.py", "cli.py", "testing.py"}


def test_the_simulator_runs_on_the_core_alone():
    wrong = [f"{path.relative_to(ROOT)} imports {module}"
             for path in sorted((ROOT / "workloads" / "sim").rglob("*.py"))
             for module in _imported_modules(path)
             if module.startswith("autellix_") and not module.startswith(
                 ("autellix_engine.core", "autellix_workloads"))]
    assert not wrong, wrong
