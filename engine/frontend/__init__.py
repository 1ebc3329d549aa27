"""The user's process: ``AutellixEngine`` over a pool of replicas (embedded vLLM
engines and remote ``vllm serve`` replicas), its configuration, model resolution, the
replica supervisor, logging and tracing. Imports ``autellix_engine.core`` and, for the
names vLLM loads and their helpers, ``autellix_engine.extension``. (The ``autellix``
command line, which also launches the server, is ``autellix_engine.cli``.)"""
