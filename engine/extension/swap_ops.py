"""Batched KV-block gather/scatter: the ``csrc/`` extension, or a PyTorch fallback.

``gather_blocks(views, block_ids, out)`` copies blocks ``block_ids`` of every view into
``out``, one contiguous host buffer (block after block; inside a block, view after
view). ``scatter_blocks(src, views, block_ids)`` is the inverse. ``views`` are tensors
whose dim 0 indexes KV blocks (see :mod:`autellix_engine.extension.swap_layout`).

The extension is compiled once (``autellix build-ext``, run by ``make setup``) into
``$AUTELLIX_CACHE_DIR/ext`` with PyTorch's JIT builder: the C++ path always, the CUDA
path when PyTorch has CUDA and ``nvcc`` is found. When it cannot be built or loaded,
the same operations run as PyTorch ``index_select``/``index_copy_`` per view (correct,
slower: one copy per view instead of one batched pass), and :func:`backend` says so.
``AUTELLIX_SWAP_EXT=off`` forces the fallback; ``=require`` turns a failed build into
an error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from autellix_engine.extension.swap_layout import dense_tail

logger = logging.getLogger(__name__)

def _sources() -> Path:
    """The extension's sources: the package's ``autellix_engine.csrc`` (the repository's
    ``csrc/``, installed with the package)."""
    from importlib.resources import files

    return Path(str(files("autellix_engine.csrc")))


CSRC = _sources()
EXT_NAME = "autellix_swap_ext"

_lock = threading.Lock()
_state: dict[str, object] = {}


class SwapExtensionError(RuntimeError):
    """The swap extension was required (``AUTELLIX_SWAP_EXT=require``) but failed."""


def _with_cuda() -> bool:
    if not torch.cuda.is_available() or torch.version.cuda is None:
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None


def build_dir() -> Path:
    root = os.environ.get("AUTELLIX_CACHE_DIR") or Path.home() / ".cache" / "autellix"
    flavour = f"torch{torch.__version__}".replace("+", "_")
    if _with_cuda():
        flavour += f"-cuda{torch.version.cuda}"
    return Path(root) / "ext" / flavour


def build(verbose: bool = False) -> ModuleType:
    """Compile (if sources changed) and import the extension; raises on failure."""
    from torch.utils.cpp_extension import load

    cuda = _with_cuda()
    sources = [CSRC / "swap_ops.cpp"]
    flags = ["-O3"]
    if cuda:
        sources += [CSRC / "swap_ops_cuda.cpp", CSRC / "swap_kernels.cu"]
        flags.append("-DAUTELLIX_WITH_CUDA")
    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return load(
        name=EXT_NAME + ("_cuda" if cuda else ""),
        sources=[str(s) for s in sources],
        extra_cflags=flags,
        extra_cuda_cflags=["-O3"],
        extra_include_paths=[str(CSRC)],
        build_directory=str(directory),
        with_cuda=cuda,
        verbose=verbose,
    )


def _extension() -> ModuleType | None:
    with _lock:
        if "module" in _state:
            return _state["module"]  # type: ignore[return-value]
        mode = os.environ.get("AUTELLIX_SWAP_EXT", "auto").lower()
        module: ModuleType | None = None
        if mode in ("off", "0", "false", "no"):
            _state["reason"] = "disabled by AUTELLIX_SWAP_EXT"
        else:
            try:
                module = build()
            except Exception as exc:  # compiler missing, headers missing, ...
                if mode == "require":
                    raise SwapExtensionError(f"could not build the swap extension: {exc}") from exc
                _state["reason"] = f"build failed: {type(exc).__name__}: {exc}"
                logger.warning(
                    "Swap extension unavailable (%s); using the PyTorch fallback",
                    _state["reason"],
                )
        _state["module"] = module
        return module


def backend() -> str:
    """``"extension"`` (the compiled ops) or ``"torch"`` (the fallback)."""
    return "extension" if _extension() is not None else "torch"


def fallback_reason() -> str | None:
    """Why the fallback is in use, or None when the extension is loaded."""
    _extension()
    return _state.get("reason")  # type: ignore[return-value]


def slot_bytes(views: Sequence[torch.Tensor]) -> int:
    """Bytes one block takes in a swap buffer (all views)."""
    return sum(v[0].numel() * v.element_size() for v in views)


def gather_blocks(
    views: Sequence[torch.Tensor], block_ids: torch.Tensor, out: torch.Tensor
) -> None:
    """``out[:n * slot_bytes] <- blocks block_ids of every view`` (synchronous)."""
    # Checked here for both paths: a C++ exception from a JIT-built extension crashed
    # the process on one CUDA machine (H100, torch 2.11) instead of raising.
    _check(views, block_ids, out, "out")
    if not len(block_ids):
        return
    ext = _extension()
    if ext is not None:
        ext.gather_blocks(list(views), block_ids, out)
        return
    rows = out[: len(block_ids) * slot_bytes(views)].view(len(block_ids), -1)
    offset = 0
    for view in views:
        picked = view.index_select(0, block_ids.to(view.device))
        flat = picked.reshape(len(block_ids), -1).view(torch.uint8)
        rows[:, offset : offset + flat.shape[1]].copy_(flat)
        offset += flat.shape[1]


def scatter_blocks(
    src: torch.Tensor, views: Sequence[torch.Tensor], block_ids: torch.Tensor
) -> None:
    """``blocks block_ids of every view <- src`` (synchronous)."""
    _check(views, block_ids, src, "src")
    if not len(block_ids):
        return
    ext = _extension()
    if ext is not None:
        ext.scatter_blocks(src, list(views), block_ids)
        return
    rows = src[: len(block_ids) * slot_bytes(views)].view(len(block_ids), -1)
    offset = 0
    for view in views:
        width = view[0].numel() * view.element_size()
        chunk = rows[:, offset : offset + width].contiguous().view(view.dtype)
        view.index_copy_(
            0,
            block_ids.to(view.device),
            chunk.view(len(block_ids), *view.shape[1:]).to(view.device),
        )
        offset += width


def _check(
    views: Sequence[torch.Tensor], block_ids: torch.Tensor, buf: torch.Tensor, name: str
) -> None:
    """Argument checks (the extension repeats them in C++)."""
    if not views:
        raise ValueError("views must not be empty")
    ids_ok = block_ids.dtype == torch.int64 and block_ids.dim() == 1
    if not ids_ok or block_ids.device.type != "cpu" or not block_ids.is_contiguous():
        raise ValueError("block_ids must be a contiguous 1-D int64 CPU tensor")
    if buf.dtype != torch.uint8 or not buf.is_contiguous() or buf.device.type != "cpu":
        raise ValueError(f"{name} must be a contiguous uint8 CPU tensor")
    if any(v.device != views[0].device for v in views):
        raise ValueError("all views must be on one device")
    if not all(dense_tail(v) for v in views):
        raise ValueError(
            "every view must be contiguous inside a block "
            "(see autellix_engine.extension.swap_layout)"
        )
    blocks = min(v.shape[0] for v in views)
    if len(block_ids) and (int(block_ids.min()) < 0 or int(block_ids.max()) >= blocks):
        raise ValueError(f"block id out of range [0, {blocks})")
    need = len(block_ids) * slot_bytes(views)
    if buf.numel() < need:
        raise ValueError(f"{name} holds {buf.numel()} bytes; the swap needs {need}")
