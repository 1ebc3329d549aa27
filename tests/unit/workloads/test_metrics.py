import pytest

from autellix_engine.core.stats import Tally
from autellix_workloads.metrics import ProgramOutcome, percentile, summarize, throughput_at_slo


def outcome(pid, arrival, completion, tokens, wait=0.0, exe=1.0, pre=0):
    return ProgramOutcome(pid, "chatbot", arrival, completion,
                          Tally(calls=1, completion_tokens=tokens, queue_wait_s=wait,
                                execution_s=exe, preemptions=pre))


def test_token_latency_on_a_hand_computed_example():
    # Program a: 10 s for 100 tokens = 0.1 s/token; b: 4 s for 10 tokens = 0.4 s/token.
    outs = [outcome("a", 0.0, 10.0, 100, wait=2.0, exe=8.0, pre=1),
            outcome("b", 2.0, 6.0, 10, wait=3.0, exe=1.0)]
    s = summarize("atlas", 0.5, outs)
    assert s.mean == pytest.approx(0.25)
    assert s.p50 == pytest.approx(0.25) and s.p99 == pytest.approx(0.397)
    assert s.programs_per_s == pytest.approx(2 / 10.0)  # 2 programs over [0, 10] s
    assert s.wait_share == pytest.approx(5.0 / 14.0)
    assert s.preemptions == 1


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5


def test_throughput_at_equal_latency_is_the_highest_rate_within_the_slo():
    def summary(policy, rate, lat):
        return summarize(policy, rate, [outcome("x", 0.0, lat * 10, 10)])

    sums = [summary("fcfs", 0.5, 0.1), summary("fcfs", 1.0, 0.5), summary("atlas", 0.5, 0.1),
            summary("atlas", 1.0, 0.15)]
    assert throughput_at_slo(sums, "fcfs", 0.2) == 0.5
    assert throughput_at_slo(sums, "atlas", 0.2) == 1.0
    assert throughput_at_slo(sums, "fcfs", 0.01) is None


def test_policies_are_measured_against_the_clairvoyant_oracle():
    from autellix_workloads.bench import against_oracle
    from autellix_workloads.metrics import Summary

    def summary(policy, rate, mean):
        return Summary(policy, rate, 10, mean, mean, mean, mean, 1.0, 0.5, 0)

    ratios = against_oracle([summary("fcfs", 1, 3.0), summary("atlas", 1, 1.5),
                             summary("srpt", 1, 1.0), summary("atlas", 2, 9.0)])
    assert ratios[("atlas", 1)] == (1.5, 0.75)  # 1.5x srpt; 3/4 of srpt's gain over fcfs
    assert ratios[("srpt", 1)] == (1.0, 1.0) and ratios[("fcfs", 1)] == (3.0, 0.0)
    assert ("atlas", 2) not in ratios  # no oracle ran at that rate
    close = against_oracle([summary("fcfs", 1, 1.02), summary("srpt", 1, 1.0),
                            summary("atlas", 1, 0.9)])
    ratio, share = close[("atlas", 1)]
    assert ratio == 0.9 and share != share  # within noise of fcfs: no share reported
