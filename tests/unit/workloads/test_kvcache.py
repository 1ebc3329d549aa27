"""The simulator's memory model: block accounting, LRU eviction, shared prefixes."""

import pytest

from autellix_workloads.sim.kvcache import BlockPool, HostPool


def test_allocation_fails_whole_when_blocks_run_out():
    pool = BlockPool(10)
    assert pool.allocate(7)
    assert not pool.allocate(4)  # nothing taken
    assert (pool.used, pool.free) == (7, 3)
    assert pool.allocate(3) and pool.free == 0


def test_freed_prefixes_stay_cached_until_blocks_are_needed():
    pool = BlockPool(10)
    pool.allocate(6)
    pool.release(6, key="p", keep=5)  # a partial last block is not cached
    assert (pool.used, pool.cached, pool.free, pool.available) == (0, 5, 5, 10)
    assert pool.hit("p", 10) == 5 and pool.used == 5 and pool.cached == 0


def test_eviction_takes_the_least_recently_freed_prefix_first_and_its_tail_first():
    pool = BlockPool(10)
    pool.allocate(9)
    pool.release(4, key="old", keep=4)
    pool.release(5, key="new", keep=5)
    assert pool.free == 1
    assert pool.allocate(3)  # 1 free + 2 evicted from the tail of "old"
    assert pool.cached_blocks("old") == 2 and pool.cached_blocks("new") == 5
    assert pool.evicted == 2
    assert pool.hit("old", 4) == 2  # its head is still there
    assert pool.allocate(3)  # now only "new" is evictable
    assert pool.cached_blocks("new") == 2


def test_a_hit_refreshes_nothing_but_a_release_makes_a_prefix_most_recent():
    pool = BlockPool(6)
    pool.allocate(6)
    pool.release(3, key="a", keep=3)
    pool.release(3, key="b", keep=3)
    pool.hit("a", 3)
    pool.release(3, key="a", keep=3)  # "a" used again: now the newest
    assert pool.allocate(3)
    assert pool.cached_blocks("b") == 0 and pool.cached_blocks("a") == 3


def test_a_shared_prefix_is_held_once_and_cached_after_its_last_user():
    pool = BlockPool(20)
    assert pool.acquire_shared("sys", 4) == (0, True)  # the first user computes it
    assert pool.acquire_shared("sys", 4) == (4, True)  # the second hits it
    assert pool.used == 4
    pool.release_shared("sys")
    assert pool.used == 4
    pool.release_shared("sys")
    assert (pool.used, pool.cached) == (0, 4)
    assert pool.acquire_shared("sys", 4) == (4, True)  # from the cache


def test_release_refuses_more_than_is_in_use():
    pool = BlockPool(4)
    pool.allocate(2)
    with pytest.raises(ValueError):
        pool.release(3)


def test_the_host_pool_refuses_what_does_not_fit():
    host = HostPool(5)
    assert host.reserve(3) and not host.reserve(3)
    host.release(3)
    assert host.reserve(5)


def test_retained_prefixes_yield_only_after_every_cached_one_worst_first():
    released = []
    order = ["worse", "better"]
    pool = BlockPool(10, pick_retained=lambda: order.pop(0),
                     on_released=lambda key, n: released.append((key, n)))
    pool.allocate(10)
    pool.release(3, key="better", keep=3, retain=True)
    pool.release(3, key="worse", keep=3, retain=True)
    pool.release(4, key="lru", keep=4)
    assert (pool.retained, pool.cached, pool.free, pool.available) == (6, 4, 0, 10)
    assert pool.allocate(4) and released == []  # the LRU prefix went first
    assert pool.allocate(2)  # then the worse program: all of it leaves retention,
    assert released == [("worse", 3)] and pool.retained_blocks("worse") == 0
    assert pool.cached_blocks("worse") == 1  # its head stays cached, evicted next
    assert pool.retained_blocks("better") == 3
    assert pool.used + pool.cached + pool.retained + pool.free == pool.capacity


def test_a_hit_on_a_retained_prefix_ends_its_retention():
    pool = BlockPool(10)
    pool.allocate(5)
    pool.release(5, key="p", keep=5, retain=True)
    assert pool.hit("p", 3) == 3  # the call needs 3: the other 2 become ordinary cache
    assert (pool.used, pool.retained, pool.cached) == (3, 0, 2)
    pool.release(3, key="p", keep=3, retain=True)
    pool.drop("p")
    assert (pool.retained, pool.cached, pool.free) == (0, 0, 10)
