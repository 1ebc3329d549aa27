"""Start vLLM's engine core without re-running the user's ``__main__``.

vLLM starts its engine core (and, on GPUs, its workers) with multiprocessing's
``spawn`` method (the CPU platform forces it; so does an initialised CUDA). A spawned
child first re-imports the parent's ``__main__``: by path for a script, by name for
``python -m``. A plain script without an ``if __name__ == "__main__":`` guard would then
build a second engine inside the child, which multiprocessing refuses ("An attempt has
been made to start a new process before the current process has finished its
bootstrapping phase"), and the user sees "the engine failed to start".

The child needs nothing from the user's ``__main__``: vLLM pickles only its own
objects, and our scheduler and swap connector are named by dotted paths. So while one
of our threads starts vLLM, the preparation data that multiprocessing hands to its
children leaves the main module out. Other threads' processes are untouched.
"""

from __future__ import annotations

import multiprocessing.spawn as mp_spawn
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Keys of ``multiprocessing.spawn.get_preparation_data`` that re-run ``__main__``.
MAIN_MODULE_KEYS = ("init_main_from_path", "init_main_from_name")

_state = threading.local()
_install_lock = threading.Lock()
_original = mp_spawn.get_preparation_data


def _preparation_data(name: str) -> dict[str, Any]:
    data = _original(name)
    if getattr(_state, "depth", 0):
        for key in MAIN_MODULE_KEYS:
            data.pop(key, None)
    return data


@contextmanager
def children_skip_main() -> Iterator[None]:
    """Processes spawned by this thread inside the block do not import ``__main__``."""
    with _install_lock:
        if mp_spawn.get_preparation_data is not _preparation_data:
            mp_spawn.get_preparation_data = _preparation_data
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
