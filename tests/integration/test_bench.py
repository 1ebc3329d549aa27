"""A small benchmark end to end on the real engine (tiny model): JSON, Markdown, plot."""

import json

from autellix_workloads.bench import BenchConfig, run_bench, write_reports
from autellix_workloads.generators import generate


async def test_small_benchmark_produces_well_formed_reports(tmp_path):
    cfg = BenchConfig(suite="mixed", rates=[2.0], policies=["fcfs", "atlas", "srpt"],
                      num_programs=4,
                      token_scale=0.05, call_scale=0.1, model="tiny", max_num_seqs=4,
                      max_model_len=1024)
    result = await run_bench(cfg)
    paths = write_reports(result, tmp_path)

    data = json.loads(paths["json"].read_text())
    assert [s["policy"] for s in data["summaries"]] == ["fcfs", "atlas", "srpt"]
    specs = {p.program_id: p for p in generate("mixed", 4, 2.0, token_scale=0.05,
                                               call_scale=0.1)}
    for key in ("fcfs@2.0", "atlas@2.0", "srpt@2.0"):
        outs = data["outcomes"][key]
        assert len(outs) == 4
        for o in outs:
            # Output lengths are enforced: every program generated exactly its tokens.
            assert o["tokens"] == specs[o["program_id"]].output_tokens
            assert o["completion_s"] > o["arrival_s"] and o["token_latency"] > 0
            assert o["execution_s"] > 0 and o["calls"] == specs[o["program_id"]].num_calls
    for s in data["summaries"]:
        assert 0 <= s["wait_share"] <= 1 and s["p50"] <= s["p99"]
    assert set(data["throughput_at_slo"]) == {"fcfs", "atlas", "srpt"}

    table = paths["markdown"].read_text()
    assert "| fcfs | 2 |" in table and "| atlas | 2 |" in table
    # Each policy against the clairvoyant oracle (the hint reached the srpt engine).
    srpt_row = next(line for line in table.splitlines() if line.startswith("| srpt |"))
    assert "| 1.00x |" in srpt_row
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
