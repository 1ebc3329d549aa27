import random

import pytest

from autellix_engine.core.host_pool import Extent, HostSwapPool


def test_first_fit_and_coalescing():
    pool = HostSwapPool(10)
    assert pool.allocate("a", 3) == Extent(0, 3)
    assert pool.allocate("b", 3) == Extent(3, 3)
    assert pool.allocate("c", 4) == Extent(6, 4)
    assert pool.allocate("d", 1) is None  # full
    pool.free("a")
    pool.free("c")
    assert pool.largest_free() == 4
    assert pool.allocate("e", 5) is None  # 3 + 4 free, not contiguous
    pool.free("b")  # merges left and right into one extent
    assert pool.largest_free() == 10
    assert pool.allocate("e", 10) == Extent(0, 10)
    pool.check()


def test_bad_requests_are_refused():
    pool = HostSwapPool(4)
    with pytest.raises(ValueError):
        pool.allocate("a", 0)
    pool.allocate("a", 1)
    with pytest.raises(ValueError, match="already holds"):
        pool.allocate("a", 1)
    assert pool.free("nobody") is False
    with pytest.raises(ValueError):
        HostSwapPool(-1)


def test_empty_pool_refuses_everything():
    pool = HostSwapPool(0)
    assert pool.allocate("a", 1) is None
    pool.check()


@pytest.mark.parametrize("seed", range(5))
def test_random_operations_keep_invariants(seed):
    rng = random.Random(seed)
    pool = HostSwapPool(257)
    held: dict[str, Extent] = {}
    for i in range(3000):
        if held and rng.random() < 0.45:
            owner = rng.choice(sorted(held))
            assert pool.free(owner)
            del held[owner]
        else:
            extent = pool.allocate(f"r{i}", rng.randint(1, 40))
            if extent is not None:
                held[f"r{i}"] = extent
        pool.check()
        assert pool.used == sum(e.length for e in held.values())
        spans = sorted(held.values(), key=lambda e: e.start)
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    for owner in list(held):
        pool.free(owner)
    assert pool.used == 0 and pool.largest_free() == 257
