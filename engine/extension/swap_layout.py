"""A vLLM KV cache as *block views*: tensors whose dim 0 is the KV block index.

vLLM's attention backends lay the cache out differently (``(2, num_blocks, ...)``,
``(num_blocks, 2, ...)``, per-head permutations). The swap operations need, per view,
a block's bytes to be contiguous. We find the block dimension by its size, split the
dimensions before it into separate views (K and V, say), and split after it too if a
block's bytes are not contiguous, so any strided layout works, at the price of more,
smaller segments.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch


def dense_tail(view: torch.Tensor) -> bool:
    """Whether each block of ``view`` (dims 1..) is one contiguous run of bytes."""
    expected = 1
    for d in range(view.dim() - 1, 0, -1):
        if view.shape[d] != 1 and view.stride(d) != expected:
            return False
        expected *= view.shape[d]
    return True


def _split_dense(view: torch.Tensor) -> list[torch.Tensor]:
    if dense_tail(view):
        return [view]
    out: list[torch.Tensor] = []
    for i in range(view.shape[1]):
        out += _split_dense(view[:, i])
    return out


def block_views(tensor: torch.Tensor, num_blocks: int) -> list[torch.Tensor]:
    """Block views of one layer's KV tensor with ``num_blocks`` blocks."""
    dims = [d for d, size in enumerate(tensor.shape) if size == num_blocks]
    if not dims:
        raise ValueError(
            f"KV tensor of shape {tuple(tensor.shape)} has no dimension of {num_blocks} blocks"
        )
    block_dim = dims[0]
    views: list[torch.Tensor] = []
    for index in itertools.product(*(range(tensor.shape[d]) for d in range(block_dim))):
        views += _split_dense(tensor[index] if index else tensor)
    return views


def cache_views(kv_caches: Iterable[torch.Tensor], num_blocks: int) -> list[torch.Tensor]:
    """Block views of all layers; layers that alias the same memory appear once."""
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    views: list[torch.Tensor] = []
    for tensor in kv_caches:
        for view in block_views(tensor, num_blocks):
            key = (view.data_ptr(), tuple(view.shape), tuple(view.stride()))
            if key not in seen:
                seen.add(key)
                views.append(view)
    return views
