"""The swap operations: random data, many layouts and block counts, poisoned buffers,
round trips exact. Runs the compiled extension and the PyTorch fallback, on CPU and,
where a GPU is present, on CUDA."""

import random

import pytest
import torch

from autellix_engine.extension import swap_ops as ops
from autellix_engine.extension.swap_layout import cache_views

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
POISON = 0xCD


@pytest.fixture(params=["extension", "torch"])
def backend(request, monkeypatch):
    if request.param == "extension":
        if ops.backend() != "extension":
            pytest.skip(f"swap extension unavailable: {ops.fallback_reason()}")
    else:
        monkeypatch.setitem(ops._state, "module", None)
    return request.param


def _layers(device, layout, num_blocks, gen):
    """Random KV tensors of one model, in one of vLLM's layouts."""
    shapes = {
        "kv_first": [(2, num_blocks, 16, 2, 8)] * 3,
        "block_first": [(num_blocks, 2, 16, 16)] * 2,
        "odd_sizes": [(2, num_blocks, 3, 5), (2, num_blocks, 7)],
    }[layout]
    dtype = {"kv_first": torch.float32, "block_first": torch.float16, "odd_sizes": torch.bfloat16}
    return [torch.randn(s, generator=gen).to(dtype[layout]).to(device) for s in shapes]


def _reference(views, ids):
    rows = [torch.cat([v[i].reshape(-1).view(torch.uint8).cpu() for v in views]) for i in ids]
    return torch.cat(rows) if rows else torch.empty(0, dtype=torch.uint8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["kv_first", "block_first", "odd_sizes"])
@pytest.mark.parametrize("seed", range(3))
def test_gather_then_scatter_round_trips_exactly(backend, device, layout, seed):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    num_blocks = rng.randint(4, 64)
    views = cache_views(_layers(device, layout, num_blocks, gen), num_blocks)
    n = rng.randint(1, num_blocks)
    src_ids = torch.tensor(rng.sample(range(num_blocks), n), dtype=torch.int64)
    size = n * ops.slot_bytes(views)
    buf = torch.full((size + 64,), POISON, dtype=torch.uint8)  # larger than needed
    ops.gather_blocks(views, src_ids, buf)
    assert torch.equal(buf[:size], _reference(views, src_ids.tolist()))
    assert bool((buf[size:] == POISON).all())  # nothing written past the swap

    # Scatter into other blocks of poisoned caches; only those blocks change.
    dst = [torch.full_like(v, float("nan")) if v.is_floating_point() else v.clone() for v in views]
    dst_ids = torch.tensor(rng.sample(range(num_blocks), n), dtype=torch.int64)
    ops.scatter_blocks(buf, dst, dst_ids)
    for v, d in zip(views, dst):
        for s, t in zip(src_ids.tolist(), dst_ids.tolist()):
            assert torch.equal(d[t].view(torch.uint8), v[s].view(torch.uint8))
        untouched = sorted(set(range(num_blocks)) - set(dst_ids.tolist()))
        assert bool(torch.isnan(d[untouched]).all())


@pytest.mark.parametrize("device", DEVICES)
def test_zero_blocks_is_a_no_op(backend, device):
    views = cache_views([torch.ones(2, 4, 8, device=device)], 4)
    buf = torch.full((8,), POISON, dtype=torch.uint8)
    ops.gather_blocks(views, torch.empty(0, dtype=torch.int64), buf)
    assert bool((buf == POISON).all())


@pytest.mark.parametrize(
    "ids, buf_bytes, match",
    [
        ([0, 9], 1 << 10, "out of range"),
        ([-1], 1 << 10, "out of range"),
        ([0, 1], 8, "holds 8 bytes"),
    ],
)
def test_bad_arguments_raise_value_errors(backend, ids, buf_bytes, match):
    views = cache_views([torch.zeros(2, 4, 8)], 4)
    with pytest.raises(ValueError, match=match):
        ops.gather_blocks(
            views, torch.tensor(ids, dtype=torch.int64), torch.zeros(buf_bytes, dtype=torch.uint8)
        )
    with pytest.raises(ValueError):
        ops.gather_blocks(views, torch.tensor([0]), torch.zeros(64, dtype=torch.float32))
    with pytest.raises(ValueError):
        ops.scatter_blocks(
            torch.zeros(64, dtype=torch.uint8), views, torch.tensor([0], dtype=torch.int32)
        )
