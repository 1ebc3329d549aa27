"""A long conversation keeps its system message and its most recent turns within the
model's context, as chat applications trim it (``langchain_core``'s ``trim_messages``)."""

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from autellix_workloads.graph import filler_tokens, trimmed


def _conversation(turns: int) -> list:
    history = [SystemMessage("be brief " * 10)]
    for t in range(turns):
        history += [HumanMessage(f"question {t} " * 20), AIMessage(f"answer {t} " * 30)]
    return history


def test_a_history_within_the_budget_is_kept_whole():
    history = _conversation(3)
    assert trimmed(history, filler_tokens(history)) == history


def test_a_long_history_keeps_its_system_message_and_latest_turns():
    history = _conversation(40)
    budget = 1000
    kept = trimmed(history, budget)
    assert filler_tokens(kept) <= budget < filler_tokens(history)
    assert kept[0] == history[0] and isinstance(kept[1], HumanMessage)
    assert kept[-1] == history[-1]  # the most recent turn is kept
    assert kept[1:] == history[len(history) - len(kept) + 1:]  # a contiguous tail
