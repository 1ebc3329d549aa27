"""A wheel built from the repository works where it is installed, outside the checkout.

The wheel goes into a fresh virtual environment. Its dependencies (vLLM, torch, ...)
are this environment's, reached through a path file (installing vLLM again would take
minutes and gigabytes); our own packages come only from the wheel: the environment
has no editable install of the checkout, and the commands run outside it.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(base / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((base / "dist").glob("autellix_lg-*.whl"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    packages = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (Path(packages) / "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return env_dir, base


def _run(env_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "autellix"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def test_the_installed_package_comes_from_the_wheel(installed):
    env_dir, base = installed
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import autellix_engine, autellix_engine.csrc as c, autellix_workloads.sim.profile as p;"
         "print(autellix_engine.__file__); print(c.__file__); print(p.__file__)"],
        cwd=base, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(env_dir) in path and str(ROOT) not in path for path in where), where


def test_build_ext_compiles_the_installed_sources(installed):
    env_dir, base = installed
    done = _run(env_dir, base, "build-ext", AUTELLIX_CACHE_DIR=str(base / "cache"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "swap extension: built" in done.stdout
    assert any((base / "cache" / "ext").rglob("*.so"))


def test_build_ext_says_so_and_exits_1_when_it_cannot_build(installed):
    env_dir, base = installed
    done = _run(env_dir, base, "build-ext", AUTELLIX_CACHE_DIR=str(base / "cache-bad"),
                CXX="/nonexistent/c++", CC="/nonexistent/cc")
    assert done.returncode == 1 and "build failed" in done.stderr


def test_the_commands_answer_help(installed):
    env_dir, base = installed
    for command in ("bench", "simulate", "serve", "replica"):
        done = _run(env_dir, base, command, "--help")
        assert done.returncode == 0 and "usage: autellix" in done.stdout, done.stderr[-2000:]
