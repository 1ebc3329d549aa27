"""A call's sampling settings reach vLLM's engine core only as the types it decodes.

The engine core decodes every request with msgspec against vLLM's types, on its input
thread; one value of the wrong type ends that thread and every later call hangs. So
``Sampling.from_params`` is strict (no ``"123"`` for an int, no ``True`` for an int),
and ``check_wire`` refuses anything the core's decoder would refuse.
"""

import pytest

from autellix_engine.core.errors import InvalidRequestError
from autellix_engine.frontend.sampling import SAMPLING_KEYS, Sampling, check_wire

#: For each field, a value of the right type, and values of wrong types.
FIELDS = {
    "temperature": (0.5, ["0.5", True, [0.5], {"v": 1}]),
    "top_p": (1, ["1", False, b"1"]),
    "top_k": (5, ["5", 5.0, True, 5.5]),
    "min_p": (0.1, ["0.1", True]),
    "seed": (123, ["123", 1.0, True, [1]]),
    "stop": ("end", [5, [5], [b"x"], {"a": "b"}]),
    "stop_token_ids": ([2, 3], ["2", [2.0], [True], 2]),
    "ignore_eos": (True, [1, "true", 0.0, "yes"]),
    "presence_penalty": (0.0, ["0", True]),
    "frequency_penalty": (0, ["0", False]),
    "repetition_penalty": (1.1, ["1.1", True]),
    "min_tokens": (1, ["1", 1.0, True]),
    "logit_bias": ({5: 1.0}, [{"5": 1.0}, {5: "1"}, [5, 1.0], {5.0: 1.0}]),
    "include_stop_str_in_output": (False, [0, "false"]),
    "logprobs": (2, ["2", 2.0, True]),
}


def test_every_sampling_key_is_covered_here():
    assert set(FIELDS) == set(SAMPLING_KEYS)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_value_of_the_fields_type_is_taken(name):
    good, _ = FIELDS[name]
    sampling = Sampling.from_params(max_tokens=4, **{name: good})
    assert getattr(sampling, name) is not None


@pytest.mark.parametrize(("name", "bad"), [(n, b) for n, (_, bads) in sorted(FIELDS.items())
                                           for b in bads], ids=repr)
def test_a_value_of_another_type_is_refused(name, bad):
    with pytest.raises(InvalidRequestError, match=name):
        Sampling.from_params(max_tokens=4, **{name: bad})


@pytest.mark.parametrize("bad", ["4", 4.0, True, [4]])
def test_max_tokens_must_be_an_int(bad):
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        Sampling.from_params(max_tokens=bad)


def test_values_arrive_in_the_engines_types():
    sampling = Sampling.from_params(max_tokens=4, temperature=1, stop="x",
                                    stop_token_ids=[1, 2], logit_bias={3: -1})
    assert isinstance(sampling.temperature, float) and sampling.stop == ("x",)
    assert sampling.stop_token_ids == (1, 2) and sampling.logit_bias == {3: -1.0}
    params = sampling.vllm_params({"program_id": "p"})
    assert params.temperature == 1.0 and params.stop == ["x"]


@pytest.mark.parametrize("schema", [{"a": float("nan")}, {"a": object()}, {1: "x"}])
def test_a_json_schema_must_be_json(schema):
    with pytest.raises(InvalidRequestError, match="json_schema"):
        Sampling.from_params(max_tokens=4, json_schema=schema)


def test_the_wire_check_refuses_what_the_engine_core_cannot_decode():
    from vllm import SamplingParams

    check_wire(SamplingParams(seed=1, max_tokens=3, extra_args={"program_id": "p"}))
    with pytest.raises(InvalidRequestError, match="seed"):
        check_wire(SamplingParams(seed="123", max_tokens=3))  # the wedge of a live server
    with pytest.raises(InvalidRequestError):
        check_wire(SamplingParams(max_tokens=3, extra_args={"x": object()}))
