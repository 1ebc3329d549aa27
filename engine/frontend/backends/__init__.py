"""The front end's back ends: where a call runs (``base.Backend``).

- :class:`~autellix_engine.frontend.backends.embedded.EmbeddedBackend`: a vLLM ``AsyncLLM`` in
  this process (its engine core in a child process) with our scheduler;
- :class:`~autellix_engine.frontend.backends.http.HttpBackend`: a stock ``vllm serve`` with our
  scheduler, over HTTP.
"""

from autellix_engine.frontend.backends.base import Backend, BackendCall, Delta, Finish

__all__ = ["Backend", "BackendCall", "Delta", "Finish"]
