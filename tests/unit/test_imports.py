import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import autellix_engine
import autellix_engine.policy

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


def test_policy_package_and_simulator_never_import_vllm_or_torch():
    code = (
        "import sys, autellix_engine.policy, autellix_workloads.sim, autellix_engine.config, "
        "autellix_engine.models; "
        "bad = [m for m in ('vllm', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_package_folder_is_installed_under_its_import_name():
    """pyproject lists packages by hand (engine/ installs as autellix_engine): a new
    sub-package that is not listed would be missing from a wheel."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder_of = {name: folder for name, folder in tool["package-dir"].items()}
    folder_of.setdefault("autellix_lg", "autellix_lg")
    found = set()
    for name, folder in folder_of.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == set(tool["packages"])


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
