"""The callback handler ends a run's program once per process table (no engine)."""

import uuid

from autellix_lg.programs import AutellixCallbackHandler


class FakeClient:
    def __init__(self, key):
        self.key = key
        self.ended: list[str] = []

    def end_program(self, program_id):
        self.ended.append(program_id)


def test_a_program_ends_once_per_server_however_many_models_called_it():
    handler = AutellixCallbackHandler()
    root, node = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({}, {}, run_id=root, name="graph")
    handler.on_chain_start({}, {}, run_id=node, parent_run_id=root, name="n1",
                           metadata={"langgraph_node": "n1"})
    # Two AutellixChatModel objects with the same base_url: two client objects.
    first, second = FakeClient(("remote", "http://a")), FakeClient(("remote", "http://a"))
    other = FakeClient(("remote", "http://b"))
    for client in (first, second, other):
        handler.record_call(node, client, "n1")
    handler.on_chain_end({}, run_id=node)
    handler.on_chain_end({}, run_id=root)
    assert first.ended == [str(root)] and second.ended == []
    assert other.ended == [str(root)]
    assert handler.finished[str(root)].calls == 3
