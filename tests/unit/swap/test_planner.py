from autellix_engine.core.swap_planner import SwapOp, SwapPlanner

BS = 16


def test_preempt_then_resume_swaps_out_and_back_in():
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    assert p.preempted("a", num_computed_tokens=40, block_ids=[7, 3, 9, 11])
    step = p.take_step()
    assert step.swap_out == [SwapOp("a", (7, 3, 9), 0)]  # ceil(40/16) = 3 blocks
    assert p.pool.used == 3
    # Resume with 41 tokens, no local prefix hit: restore all 40 computed tokens.
    assert p.offer("a", num_tokens=41, num_local_tokens=0) == 40
    p.resumed("a", block_ids=[1, 2, 5], num_external_tokens=40)
    step = p.take_step()
    assert step.swap_in == [SwapOp("a", (1, 2, 5), 0)]
    assert p.pool.used == 0  # released after the step that swaps it in
    stats = p.pop_stats("a")
    assert (stats.swaps_out, stats.swaps_in, stats.swapped_blocks) == (1, 1, 3)


def test_local_prefix_hit_swaps_in_only_the_rest():
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    p.preempted("a", 50, [4, 5, 6, 7])
    p.take_step()
    assert p.offer("a", num_tokens=51, num_local_tokens=32) == 18
    p.resumed("a", [4, 5, 8, 9], num_external_tokens=18)
    # Host slots 2..3 (tokens 32..49) go to the call's 3rd and 4th blocks.
    assert p.take_step().swap_in == [SwapOp("a", (8, 9), 2)]


def test_one_token_is_always_left_to_compute():
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    p.preempted("a", 32, [0, 1])
    p.take_step()
    assert p.offer("a", num_tokens=32, num_local_tokens=0) == 31


def test_full_pool_falls_back_to_recompute():
    p = SwapPlanner(pool_blocks=2, block_size=BS)
    assert not p.preempted("a", 48, [0, 1, 2])
    assert p.take_step().swap_out == []
    assert p.offer("a", 49, 0) == 0
    assert p.pop_stats("a").swap_fallbacks == 1
    assert not p.preempted("b", 0, [])  # nothing computed: nothing to do, no fallback
    assert p.pop_stats("b") is None


def test_abort_while_swapped_out_frees_the_pool_and_drops_a_pending_copy():
    p = SwapPlanner(pool_blocks=4, block_size=BS)
    p.preempted("a", 32, [0, 1])
    p.finished("a")  # aborted in the same step
    assert p.take_step().swap_out == []
    assert p.pool.used == 0
    p.preempted("b", 32, [0, 1])
    p.take_step()
    p.finished("b")  # aborted later, while swapped out
    assert p.pool.used == 0 and not p.is_swapped_out("b")


def test_declined_load_releases_the_extent():
    p = SwapPlanner(pool_blocks=4, block_size=BS)
    p.preempted("a", 32, [0, 1])
    p.take_step()
    p.offer("a", 33, 32)
    p.resumed("a", [0, 1, 2], num_external_tokens=0)  # local hit covered it
    assert p.take_step().swap_in == []
    assert p.pool.used == 0


def test_extents_freed_by_a_swap_in_are_reused_only_from_the_next_step():
    p = SwapPlanner(pool_blocks=2, block_size=BS)
    p.preempted("a", 32, [0, 1])
    p.take_step()
    p.offer("a", 33, 0)
    p.resumed("a", [2, 3], 32)
    assert not p.preempted("b", 32, [4, 5])  # a's extent still in use this step
    p.take_step()
    assert p.preempted("c", 32, [4, 5])


def test_seconds_accumulate_per_call():
    p = SwapPlanner(pool_blocks=4, block_size=BS)
    p.preempted("a", 16, [0])
    p.add_seconds("a", 0.25)
    p.add_seconds("a", 0.5)
    p.add_seconds("unknown", 1.0)
    assert p.pop_stats("a").swap_s == 0.75


# -- the host tier of KV retention ----------------------------------------------------
HASHES = [b"h0", b"h1", b"h2", b"h3"]


def test_a_retained_program_is_copied_out_and_offered_to_its_next_call_by_hash():
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    assert p.retain("prog", [7, 3, 9], HASHES[:3])
    assert p.take_step().swap_out == [SwapOp("retained:1:prog", (7, 3, 9), 0)]
    assert p.retained_blocks == 3
    p.expect("call-2", "prog")
    # The next call's prompt: the same 3 blocks, then a 4th the pool never had.
    assert p.offer("call-2", num_tokens=70, num_local_tokens=16, block_hashes=HASHES) == 32
    assert p.awaits_blocks("call-2")
    p.resumed("call-2", [5, 6, 8, 10, 11], num_external_tokens=32)
    p.drop_retained("prog")  # the scheduler drops the copy once the call is admitted
    assert p.take_step().swap_in == [SwapOp("retained:1:prog", (6, 8), 1)]
    assert p.reload_tokens("call-2") == 32
    assert p.pool.used == 0 and p.retained_blocks == 0


def test_a_call_whose_prompt_differs_is_offered_nothing():
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    p.retain("prog", [1, 2], HASHES[:2])
    p.take_step()
    p.expect("c", "prog")
    assert p.offer("c", num_tokens=64, num_local_tokens=0, block_hashes=[b"x", b"h1"]) == 0
    p.expect("other", "someone-else")
    assert p.offer("other", 64, 0, HASHES) == 0


def test_preemptions_take_host_room_from_retained_copies():
    p = SwapPlanner(pool_blocks=4, block_size=BS)
    p.retain("prog", [1, 2, 3], HASHES[:3])
    p.take_step()
    assert p.preempted("a", num_computed_tokens=40, block_ids=[4, 5, 6])
    assert not p.has_retained("prog")
    assert p.take_step().swap_out == [SwapOp("a", (4, 5, 6), 0)]


def test_a_copy_read_this_step_is_not_given_to_a_preemption():
    p = SwapPlanner(pool_blocks=4, block_size=BS)
    p.retain("prog", [1, 2, 3], HASHES[:3])
    p.take_step()
    p.expect("c", "prog")
    p.offer("c", 64, 0, HASHES)
    p.resumed("c", [7, 8, 9, 10], num_external_tokens=48)
    assert not p.preempted("a", 40, [4, 5, 6])  # falls back to recomputation
    step = p.take_step()
    assert step.swap_in == [SwapOp("retained:1:prog", (7, 8, 9), 0)] and not step.swap_out


def test_no_host_room_means_no_copy():
    p = SwapPlanner(pool_blocks=2, block_size=BS)
    assert not p.retain("prog", [1, 2, 3], HASHES[:3])
    assert p.take_step().swap_out == [] and p.pool.used == 0


def test_a_program_released_twice_in_one_step_gets_a_second_copy():
    """A multi-threaded program is pinned again by another thread and released again
    before the step is built (the LATS benchmark found this crashing the engine)."""
    p = SwapPlanner(pool_blocks=8, block_size=BS)
    assert p.retain("prog", [1, 2], HASHES[:2])
    assert p.retain("prog", [1, 2, 3], HASHES[:3])
    step = p.take_step()
    assert [op.req_id for op in step.swap_out] == ["retained:1:prog", "retained:2:prog"]
    assert p.pool.used == 3 and p.retained_blocks == 3  # the first copy is freed
    p.pool.check()
