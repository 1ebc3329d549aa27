"""The front end's back ends: where a call runs (``base.Backend``).

- :class:`~autellix_engine.backends.embedded.EmbeddedBackend`: a vLLM ``AsyncLLM`` in
  this process (its engine core in a child process) with our scheduler;
- :class:`~autellix_engine.backends.http.HttpBackend`: a stock ``vllm serve`` with our
  scheduler, over HTTP.
"""

from autellix_engine.backends.base import Backend, BackendCall, Delta, Finish

__all__ = ["Backend", "BackendCall", "Delta", "Finish"]
