import math

import pytest

from autellix_engine.core import PolicyConfig, PolicyKind, ServiceUnit, parse_policy


def test_default_boundaries_are_geometric_from_64_tokens():
    cfg = PolicyConfig()
    assert cfg.boundaries == (64, 128, 256, 512, 1024, 2048, 4096)
    assert cfg.resolved_quanta == (64, 64, 128, 256, 512, 1024, 2048, math.inf)
    assert cfg.service_unit is ServiceUnit.TOKENS


@pytest.mark.parametrize(
    ("service", "level"), [(0, 0), (63.9, 0), (64, 1), (127, 1), (128, 2), (4095, 6), (1e9, 7)]
)
def test_level_for_uses_half_open_ranges(service, level):
    assert PolicyConfig().level_for(service) == level


def test_round_trip_through_dict_keeps_every_knob():
    cfg = PolicyConfig(
        service_unit="seconds", num_queues=3, first_boundary=0.5, quanta=(1, 2, math.inf),
        beta=4.0, max_preemptions_per_step=2, queue_order="call",
    )
    again = PolicyConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.resolved_quanta == (1.0, 2.0, math.inf)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_queues": 0},
        {"first_boundary": 0},
        {"boundary_growth": 1.0},
        {"beta": 0},
        {"quanta": (1, 2)},
        {"prefill_token_weight": -1},
        {"service_unit": "furlongs"},
        {"queue_order": "random"},
    ],
)
def test_invalid_values_raise(kwargs):
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)


def test_parse_policy_names_the_valid_ones():
    assert parse_policy("atlas") is PolicyKind.ATLAS
    with pytest.raises(ValueError, match="fcfs, mlfq, plas, atlas"):
        parse_policy("sjf")
