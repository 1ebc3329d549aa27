"""The generators reproduce their documented distributions (fixed seeds)."""

import statistics

import pytest

from autellix_workloads.distributions import LATS_WIDTH, SHAPES
from autellix_workloads.generators import generate, poisson_arrivals

N = 4000


def calls(ps):
    return [c for p in ps for s in p.stages for c in s]


@pytest.mark.parametrize("suite", ["chatbot", "react", "lats"])
def test_token_means_match_the_paper(suite):
    ps = generate(suite, N if suite != "lats" else 400, 1.0, seed=7)
    cs = calls(ps)
    shape = SHAPES[suite]
    prompt = statistics.mean(c.prompt_tokens for c in cs)
    output = statistics.mean(c.output_tokens for c in cs)
    assert prompt == pytest.approx(shape.prompt_mean, rel=0.05)
    assert output == pytest.approx(shape.output_mean, rel=0.05)


def test_calls_per_program_have_the_papers_mean_and_max():
    chat = [p.num_calls for p in generate("chatbot", N, 1.0, seed=1)]
    react = [p.num_calls for p in generate("react", N, 1.0, seed=2)]
    lats = [p.num_calls for p in generate("lats", 400, 1.0, seed=3)]
    assert statistics.mean(chat) == pytest.approx(6.66, rel=0.06) and max(chat) <= 80
    assert statistics.mean(react) == pytest.approx(10.75, rel=0.06) and max(react) <= 70
    assert statistics.mean(lats) == pytest.approx(160, rel=0.12)
    assert statistics.median(chat) < statistics.mean(chat)  # long right tail


def test_lats_alternates_parallel_expansions_and_reflections():
    p = generate("lats", 1, 1.0, seed=5)[0]
    assert len(p.stages) % 2 == 0 and all(len(s) == LATS_WIDTH for s in p.stages)


def test_react_shares_a_long_system_prompt_and_sleeps_for_tools():
    p = generate("react", 1, 1.0, seed=5, tool_latency_s=0.2)[0]
    assert p.system_tokens == 600 and p.tool_latency_s == 0.2
    assert all(len(s) == 1 for s in p.stages)


def test_poisson_arrivals_have_exponential_gaps():
    import random

    ts = poisson_arrivals(random.Random(0), 2.0, 20000)
    gaps = [b - a for a, b in zip([0.0, *ts], ts, strict=False)]
    mean = statistics.mean(gaps)
    assert mean == pytest.approx(0.5, rel=0.03)
    assert statistics.stdev(gaps) / mean == pytest.approx(1.0, rel=0.05)  # CV of 1


def test_mixed_is_an_equal_mix_and_seeds_are_reproducible():
    ps = generate("mixed", 3000, 1.0, seed=11)
    for suite in ("chatbot", "react", "lats"):
        assert sum(p.suite == suite for p in ps) / 3000 == pytest.approx(1 / 3, abs=0.03)
    assert generate("mixed", 3000, 1.0, seed=11) == ps
    assert generate("mixed", 3000, 1.0, seed=12) != ps


def test_scales_shrink_lengths_and_calls_but_keep_the_shape():
    full = generate("chatbot", 2000, 1.0, seed=4)
    small = generate("chatbot", 2000, 1.0, seed=4, token_scale=0.25, call_scale=0.5)
    ratio = statistics.mean(c.output_tokens for c in calls(small)) / statistics.mean(
        c.output_tokens for c in calls(full))
    assert ratio == pytest.approx(0.25, rel=0.1)
    assert statistics.mean(p.num_calls for p in small) == pytest.approx(3.33, rel=0.1)


@pytest.mark.parametrize("bad", [{"suite": "poker"}, {"rate": 0}, {"num_programs": 0}])
def test_bad_arguments_raise(bad):
    args = {"suite": "chatbot", "num_programs": 3, "rate": 1.0} | bad
    with pytest.raises(ValueError):
        generate(args.pop("suite"), args.pop("num_programs"), args.pop("rate"))


def test_chats_run_a_turn_per_run_with_think_time_drawn_apart_from_the_programs():
    quick = generate("mixed", 60, 1.0, seed=3, think_time_s=0.0)
    slow = generate("mixed", 60, 1.0, seed=3, think_time_s=20.0)
    for a, b in zip(quick, slow, strict=True):
        assert (a.program_id, a.arrival_s, a.stages) == (b.program_id, b.arrival_s, b.stages)
        assert a.run_per_stage == b.run_per_stage == (a.suite == "chatbot")
        if a.suite == "chatbot":
            assert len(b.think_s) == len(b.stages) - 1 and all(t > 0 for t in b.think_s)
            assert a.idle_s == 0.0 and b.idle_s == sum(b.think_s)
        else:
            assert a.think_s == b.think_s == ()
    gaps = [t for p in generate("chatbot", 400, 1.0, think_time_s=20.0) for t in p.think_s]
    assert 16 < sum(gaps) / len(gaps) < 24  # log-normal around the mean
