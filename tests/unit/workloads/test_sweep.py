"""The simulated sweep (``autellix simulate``): variants, reports, and the CLI."""

import json

import pytest

from autellix_workloads import cli
from autellix_workloads.metrics import Summary
from autellix_workloads.sim.des import SimConfig
from autellix_workloads.sim.sweep import rate_at_latency, variant_config


def test_the_vllm_variant_is_fcfs_without_prefix_caching():
    policy, cfg = variant_config("vllm", SimConfig())
    assert (policy, cfg.prefix_caching, cfg.preemption) == ("fcfs", False, "recompute")
    policy, cfg = variant_config("atlas", SimConfig())
    assert (policy, cfg.prefix_caching, cfg.preemption) == ("atlas", True, "swap")


def summary(policy, rate, mean):
    return Summary(policy, rate, 10, mean, mean, mean, mean, rate, 0.0, 0)


def test_rate_at_latency_interpolates_between_the_rates_around_the_slo():
    runs = [summary("a", 1.0, 0.1), summary("a", 2.0, 0.2), summary("a", 3.0, 0.6)]
    assert rate_at_latency(runs, "a", 0.4) == pytest.approx(2.5)
    assert rate_at_latency(runs, "a", 1.0) == 3.0  # never reaches it: the highest rate
    assert rate_at_latency(runs, "a", 0.05) is None  # over it even at the lowest


def test_the_cli_writes_a_table_json_and_plot(tmp_path, capsys):
    rc = cli.main(["simulate", "--suite", "chatbot", "--programs", "20", "--rates", "0.5,1",
                   "--policies", "vllm,fcfs,atlas,srpt", "--token-scale", "0.25",
                   "--call-scale", "0.25", "--out", str(tmp_path)])
    assert rc == 0
    assert "| atlas | 1 |" in capsys.readouterr().out
    data = json.loads((tmp_path / "bench-chatbot.json").read_text())
    assert {s["policy"] for s in data["summaries"]} == {"vllm", "fcfs", "atlas", "srpt"}
    assert (tmp_path / "bench-chatbot.png").stat().st_size > 0


def test_the_cli_names_the_known_profiles_and_policies_for_unknown_ones(capsys):
    assert cli.main(["simulate", "--profile", "b200", "--programs", "5"]) == 2
    assert "a100-llama3.1-8b" in capsys.readouterr().err
    assert cli.main(["simulate", "--policies", "fcfs,lifo", "--programs", "5"]) == 2
    assert "valid: fcfs" in capsys.readouterr().err
    for bad in (["--rates", "0"], ["--rates", "fast"], ["--programs", "0"]):
        assert cli.main(["simulate", *bad]) == 2
        assert "error" in capsys.readouterr().err
