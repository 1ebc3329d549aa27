"""Quiet embedding: vLLM's logs on stderr at WARNING, and one line per engine start.

A script that embeds the engine owns its stdout (``python app.py > out.txt``). vLLM
configures its own logger when it is first imported, from ``VLLM_LOGGING_*``
variables; its defaults are INFO on stdout (about 60 lines per engine start, one of
them a 3,000-character configuration dump). :func:`quiet_vllm_defaults` sets other
defaults before that import: WARNING, on stderr. Variables the user set win, so
``VLLM_LOGGING_LEVEL=INFO`` brings vLLM's logs back (and
``VLLM_LOGGING_STREAM=ext://sys.stdout`` puts them on stdout again). Engine-core
processes inherit the environment, so the same holds there.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: Our defaults for vLLM's (and transformers') logging variables.
QUIET_ENV = {
    "VLLM_LOGGING_LEVEL": "WARNING",
    "VLLM_LOGGING_STREAM": "ext://sys.stderr",
    "TRANSFORMERS_VERBOSITY": "error",
}
#: The logger of :func:`announce` (engine starts): INFO by default, unlike the rest of
#: ``autellix_engine``'s loggers, which speak at WARNING and above.
LOGGER_NAME = "autellix_engine.status"


_defaulted: set[str] = set()  # the variables we set (the user had not)


def quiet_vllm_defaults() -> None:
    """Default vLLM's logging to WARNING on stderr (set before vLLM is imported)."""
    for name, value in QUIET_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _defaulted.add(name)
    # vLLM's import warns about a deprecated torch name, once per process.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")


def verbose_vllm() -> None:
    """vLLM's INFO logs (``autellix -v``), still on stderr, unless the user chose."""
    if "VLLM_LOGGING_LEVEL" in _defaulted:
        os.environ["VLLM_LOGGING_LEVEL"] = "INFO"


def announce(message: str, *args: object) -> None:
    """One INFO line on stderr (``autellix: ...``) that a user sees without any
    logging setup; an application that configured logging gets it as a record of
    the ``autellix_engine`` logger instead."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("autellix: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.info(message, *args)
