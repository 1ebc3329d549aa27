"""The server's checkpointer: in memory, and deleting a thread ends its program
(``DELETE /threads/{id}``: its KV is freed at once, not at the idle timeout)."""

from contextlib import asynccontextmanager

from langgraph.checkpoint.memory import InMemorySaver

from autellix_lg import ending_programs


@asynccontextmanager
async def make_checkpointer():
    yield ending_programs(InMemorySaver())
