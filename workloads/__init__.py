"""Agentic workload suites and the benchmark harness: issue #4."""
