"""The code base passes ruff with the project's settings (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency (pyproject.toml [test])"
    run = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:]
