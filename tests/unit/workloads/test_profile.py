"""Cost profiles: memory arithmetic from model dimensions, and the A100/H100 step
times against the public measurements they come from (gpu_cost_model.md 2.5)."""

import pytest

from autellix_workloads.sim.profile import PROFILES, CostProfile


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_cites_a_source_for_its_numbers(name):
    prof = CostProfile.load(name)
    assert prof.num_gpu_blocks > 0 and prof.max_num_seqs > 0
    for key in ("kv_bytes_per_token", "linear_ms", "max_num_seqs"):
        assert prof.sources.get(key), f"{name}: no source for {key}"


def test_a100_kv_capacity_follows_vllms_memory_arithmetic():
    prof = CostProfile.load("a100-llama3.1-8b")
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token.
    assert prof.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    kv_gib = 79.2 * 0.9 - 14.99 - 1.39 - 0.2
    assert prof.num_gpu_blocks == int(kv_gib * 2**30) // (16 * 131072)
    assert 440_000 <= prof.num_gpu_blocks * 16 <= 450_000  # the note's estimate


# (decoding sequences, their total context, measured ms per step, source)
A100_DECODE_STEPS = [
    (300, 300 * 225, 28.5, "S6 ShareGPT 320 prompts, first chunks: 27.5-29.5 ms"),
    (15, 12_000, 12.4, "S6 same run, tail: 12.3-12.5 ms"),
    (10, 2_000, 11.6, "S6 prompt_10 run: 11.3-11.9 ms"),
]


@pytest.mark.parametrize(("batch", "context", "measured", "source"), A100_DECODE_STEPS)
def test_a100_decode_steps_are_within_15_percent_of_public_measurements(
        batch, context, measured, source):
    model = CostProfile.load("a100-llama3.1-8b").step_ms(0, batch, context)
    assert model == pytest.approx(measured, rel=0.15), source


def test_h100_single_sequence_decode_is_within_15_percent_of_its_tpot():
    # S9: Llama-3.1-8B fp16 on H100-80GB-HBM3, TPOT p50 6.48 ms at concurrency 1.
    model = CostProfile.load("h100-llama3.1-8b").step_ms(0, 1, 1_000)
    assert model == pytest.approx(6.48, rel=0.15)


def test_linear_term_interpolates_and_extrapolates_the_table():
    prof = CostProfile.load("a100-llama3.1-8b")
    assert prof.linear(1) == 9.7 and prof.linear(2048) == 145.7
    assert prof.linear(1536) == pytest.approx((75.2 + 145.7) / 2)
    assert prof.linear(65536) > prof.linear(32768)


def test_a_long_prefill_pays_its_attention_term():
    prof = CostProfile.load("a100-llama3.1-8b")
    plain = prof.step_ms(2048, 0, 0)
    with_attention = prof.step_ms(2048, 0, 0, prefill_c2=2048**2)
    assert with_attention - plain == pytest.approx(4.6e-6 * 2048**2)


def test_unknown_profiles_and_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="known: a100"):
        CostProfile.load("b200-llama")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "typo_field": 1}')
    with pytest.raises(ValueError, match="typo_field"):
        CostProfile.load(bad)
