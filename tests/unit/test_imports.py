import subprocess
import sys
import tomllib
from pathlib import Path

import autellix_engine
import autellix_engine.policy

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned():
    assert set(autellix_engine.__all__) == {
        "AutellixEngine", "AutellixError", "CallResult", "CallTimings", "EngineConfig",
        "EngineNotRunningError", "InvalidRequestError", "ModelError", "PolicyConfig", "Program",
        "ProgramEndedError", "ProgramSnapshot", "PromptTooLongError", "StreamChunk",
        "UnknownProgramError", "Usage",
    }
    for name in autellix_engine.__all__:
        assert getattr(autellix_engine, name) is not None


def test_policy_package_and_simulator_never_import_vllm_or_torch():
    code = (
        "import sys, autellix_engine.policy, autellix_engine.sim, autellix_engine.config, "
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
        "import autellix_engine.cli, autellix_workloads.bench; "
        "from autellix_engine import AutellixScheduler; "
        "import engine as e2; assert e2.USER"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
