"""Fetch vLLM's own tests from the ``vllm==0.32.0`` source distribution on PyPI.

``make setup`` runs this once. Only ``tests/`` is unpacked, into the cache
(``$AUTELLIX_CACHE_DIR`` or ``~/.cache/autellix``), never into this repository. The
sdist is found through PyPI's JSON simple API (PEP 691) and checked against PyPI's
sha256; ``pip download`` cannot be used, as it builds the sdist's metadata (vLLM's build
needs a matching torch and a compiler). The scheduler tests build a
``ModelConfig("facebook/opt-125m")`` (one, opt-350m); with no model hub here, local
folders of those names hold their configs (only configs: the tests run no model).

    python tests/vllm_upstream/fetch.py   # prints the folder
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "0.32.0"
SIMPLE_URL = "https://pypi.org/simple/vllm/"
SDIST = f"vllm-{VERSION}.tar.gz"


def cache_root() -> Path:
    root = os.environ.get("AUTELLIX_CACHE_DIR") or Path.home() / ".cache" / "autellix"
    return Path(root) / f"vllm-{VERSION}-tests"


def _sdist_url() -> tuple[str, str]:
    request = urllib.request.Request(
        SIMPLE_URL, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    for entry in files:
        if entry["filename"] == SDIST:
            return entry["url"], entry["hashes"]["sha256"]
    raise RuntimeError(f"{SDIST} is not on PyPI")


def fetch() -> Path:
    """The folder that holds vLLM's ``tests/`` (downloaded once)."""
    target = cache_root()
    if (target / ".complete").is_file():
        return target
    url, sha256 = _sdist_url()
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{SDIST}: sha256 mismatch")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".vllm-tests-", dir=target.parent))
    try:
        prefix = f"vllm-{VERSION}/"
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(prefix + "tests/") and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(tmp, members=members, filter="data")
        _write_opt_configs(tmp / "facebook")
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_opt_configs(folder: Path) -> None:
    from transformers import OPTConfig

    configs = {
        "opt-125m": OPTConfig(),  # transformers' defaults are OPT-125m's
        "opt-350m": OPTConfig(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096,
                              num_attention_heads=16, word_embed_proj_dim=512),
    }
    for name, config in configs.items():
        config.architectures = ["OPTForCausalLM"]
        config.save_pretrained(folder / name)


if __name__ == "__main__":
    print(fetch())  # noqa: T201
    sys.exit(0)
