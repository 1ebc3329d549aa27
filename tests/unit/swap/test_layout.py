import torch

from autellix_engine.extension.swap_layout import block_views, cache_views
from autellix_engine.extension.swap_ops import slot_bytes

N = 12


def _covers(tensor, views):
    """Views' bytes per block add up to the tensor's bytes per block."""
    return slot_bytes(views) * N == tensor.numel() * tensor.element_size()


def test_kv_first_layout_splits_into_k_and_v():
    t = torch.zeros(2, N, 16, 4, 8)
    views = block_views(t, N)
    assert len(views) == 2 and all(v.shape[0] == N for v in views)
    assert _covers(t, views)


def test_block_first_layout_is_one_view():
    t = torch.zeros(N, 2, 16, 8, dtype=torch.float16)
    assert len(block_views(t, N)) == 1


def test_strided_layout_is_split_until_dense():
    t = torch.zeros(2, N, 4, 16, 8).permute(0, 1, 3, 2, 4)  # (2, N, 16, 4, 8), not dense
    views = block_views(t, N)
    assert len(views) == 2 * 16 * 4  # down to dense rows of 8 elements
    assert _covers(t, views)


def test_layers_sharing_memory_appear_once():
    t = torch.zeros(2, N, 16)
    views = cache_views([t, t, torch.zeros(2, N, 16)], N)
    assert len(views) == 4


def test_no_block_dimension_is_an_error():
    try:
        block_views(torch.zeros(2, 5, 3), N)
    except ValueError as e:
        assert "no dimension" in str(e)
    else:
        raise AssertionError("expected ValueError")
