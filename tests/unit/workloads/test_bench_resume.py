"""``autellix bench`` keeps each finished run in its report and resumes from it."""

import asyncio

import pytest

from autellix_engine.core.stats import Tally
from autellix_workloads.bench import (
    BenchConfig,
    load_runs,
    report_paths,
    result_of,
    run_bench,
    write_reports,
)
from autellix_workloads.metrics import ProgramOutcome


def _outcomes(n: int, scale: float) -> list[ProgramOutcome]:
    return [ProgramOutcome(f"p{i}", "mixed", float(i), i + 10 * scale,
                           Tally(calls=2, completion_tokens=100, execution_s=1.0))
            for i in range(n)]


def test_a_resumed_bench_runs_only_what_is_missing(tmp_path):
    cfg = BenchConfig(rates=[0.5, 1.0], policies=["fcfs", "atlas"])
    done = {"fcfs@0.5": _outcomes(3, 1.0), "fcfs@1.0": _outcomes(3, 2.0),
            "atlas@0.5": _outcomes(3, 0.5), "atlas@1.0": _outcomes(3, 1.5)}
    write_reports(result_of(cfg, done), tmp_path)
    # Every run is in the report: nothing runs (no engine starts), the result is whole.
    result = asyncio.run(run_bench(cfg, tmp_path, resume=True))
    assert [(s.policy, s.rate) for s in result.summaries] == [
        ("fcfs", 0.5), ("fcfs", 1.0), ("atlas", 0.5), ("atlas", 1.0)]
    assert result.outcomes["atlas@1.0"][2].tally.completion_tokens == 100


def test_a_partial_report_holds_the_finished_runs(tmp_path):
    cfg = BenchConfig(rates=[0.5, 1.0], policies=["fcfs", "atlas"])
    write_reports(result_of(cfg, {"fcfs@0.5": _outcomes(2, 1.0)}), tmp_path)
    assert set(load_runs(cfg, tmp_path)) == {"fcfs@0.5"}
    assert "| fcfs | 0.5 |" in report_paths("mixed", tmp_path)["markdown"].read_text()


def test_resuming_over_another_workloads_report_is_refused(tmp_path):
    write_reports(result_of(BenchConfig(), {"fcfs@0.5": _outcomes(2, 1.0)}), tmp_path)
    with pytest.raises(ValueError, match="num_programs"):
        load_runs(BenchConfig(num_programs=48), tmp_path)
    assert load_runs(BenchConfig(), tmp_path / "empty") == {}
