"""Run some of vLLM's own tests (unpacked from its sdist) in a separate pytest process
and read each test's outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.vllm_upstream.fetch import cache_root

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def run_vllm_tests(files: list[str], plugin: str, env: dict[str, str], report: Path,
                   confcutdir: str, timeout_s: float = 900) -> dict[str, str]:
    """{test id: passed|failed|skipped} of vLLM's ``files`` with our ``plugin`` loaded."""
    root = cache_root()
    if not (root / ".complete").is_file():
        pytest.fail(f"vLLM's tests are not in {root}: run `make setup` "
                    "(python tests/vllm_upstream/fetch.py)")
    path = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider",
         f"--confcutdir={confcutdir}", "-q", "-W", "ignore", f"--junitxml={report}", *files],
        cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, **env},
        capture_output=True, text=True, timeout=timeout_s)
    if not report.is_file():
        pytest.fail(f"vLLM's tests did not run ({env}):\n{done.stdout[-3000:]}")
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        outcome = ("failed" if tags & {"failure", "error"} else
                   "skipped" if "skipped" in tags else "passed")
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes
