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
            tally = o["tally"]
            assert tally["completion_tokens"] == specs[o["program_id"]].output_tokens
            assert o["completion_s"] > o["arrival_s"] and o["token_latency"] > 0
            assert tally["execution_s"] > 0
            assert tally["calls"] == specs[o["program_id"]].num_calls
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


async def test_chats_run_a_turn_per_run_as_one_program_or_one_per_turn():
    """A chat's turns are runs on its thread with think time between them; in thread
    scope they are one program (its tally covers every turn), in run scope one each
    (summed); think time is not latency; each rate replays the chats from their first
    turn."""
    cfg = BenchConfig(suite="chatbot", rates=[2.0, 4.0],
                      policies=["atlas+retain", "atlas/run"],
                      num_programs=2, token_scale=0.05, call_scale=0.5, think_time_s=0.2,
                      model="tiny", max_num_seqs=4, max_model_len=1024)
    result = await run_bench(cfg)
    specs = {p.program_id: p for p in generate("chatbot", 2, 2.0, token_scale=0.05,
                                               call_scale=0.5, think_time_s=0.2)}
    assert any(len(p.stages) > 1 for p in specs.values())
    prompts: dict[str, list[int]] = {}
    for key in ("atlas+retain@2.0", "atlas/run@2.0", "atlas+retain@4.0", "atlas/run@4.0"):
        for o in result.outcomes[key]:
            prompts.setdefault(o.program_id, []).append(o.tally.prompt_tokens)
            spec = specs[o.program_id]
            assert o.tally.calls == spec.num_calls
            assert o.tally.completion_tokens == spec.output_tokens
            assert o.idle_s == spec.idle_s
            assert o.completion_s - o.arrival_s >= spec.idle_s and o.response_s > 0
    for program_id, seen in prompts.items():  # no history carried from an earlier run
        assert max(seen) < 1.3 * min(seen), (program_id, seen)
