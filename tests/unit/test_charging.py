"""CallBook: an engine's active calls and what each step charges them (no vLLM)."""

from autellix_engine.core import PolicyConfig, create_policy
from autellix_engine.core.charging import CallBook

CONFIG = PolicyConfig(first_boundary=4, num_queues=3, prefill_token_weight=0.5, beta=1e9)


def test_a_step_charges_prefill_by_weight_and_decode_by_token():
    book = CallBook(create_policy("plas", CONFIG), CONFIG)
    a = book.admit("a", "p", "main", 0.0)
    book.charge_step({"a": (6, False)}, step_s=0.5, waited_s=0.5)  # a 6-token prefill
    assert a.service == 3.0 and a.stats.prefill_tokens == 6 and a.stats.prefill_s == 0.5
    book.charge_step({"a": (1, True)}, step_s=0.1, waited_s=0.1)
    assert a.service == 4.0 and a.stats.decode_tokens == 1
    assert a.stats.execution_s == 0.6


def test_calls_that_change_queue_are_handed_over_once():
    book = CallBook(create_policy("plas", CONFIG), CONFIG)
    a = book.admit("a", "p", "main", 0.0)
    book.admit("b", "q", "main", 0.1)
    for _ in range(5):  # a's quantum (4 units) runs out; b waits
        book.charge_step({"a": (1, True)}, step_s=0.01, waited_s=0.01)
    assert [c.call_id for c in book.take_changed()] == ["a"] and a.level == 1
    assert list(book.take_changed()) == []
    assert book.finish("a") is a and "a" not in book and len(book) == 1
    assert a.stats.demotions == 1 and book.get("b").stats.wait == 0  # charged when it stops


def test_waiting_is_charged_when_a_call_stops_waiting():
    book = CallBook(create_policy("plas", CONFIG), CONFIG)
    book.admit("a", "p", "main", 0.0)
    b = book.admit("b", "q", "main", 0.1)
    for _ in range(3):
        book.charge_step({"a": (1, True)}, step_s=0.01, waited_s=0.01)
    book.charge_step({"b": (1, True)}, step_s=0.01, waited_s=0.01)  # b runs: 3 steps waited
    assert b.stats.wait == 3.0
