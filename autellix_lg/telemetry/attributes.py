"""Span attribute names. ``gen_ai.*`` keys follow the OpenTelemetry GenAI semantic
conventions; ``autellix.*`` and ``langgraph.*`` are this project's."""

from autellix_engine.frontend.telemetry import (  # noqa: F401 - re-exported names
    CALL_ID,
    CALL_STATS_PREFIX,
    CONVERSATION_ID,
    DECODE_S,
    OPERATION,
    POLICY,
    PREEMPTIONS,
    PREFILL_S,
    PROGRAM_ID,
    PROVIDER,
    QUEUE_LEVEL,
    QUEUE_START_LEVEL,
    QUEUE_WAIT_S,
    REQUEST_MAX_TOKENS,
    REQUEST_MODEL,
    REQUEST_TEMPERATURE,
    RESPONSE_FINISH_REASONS,
    RESPONSE_MODEL,
    SERVICE,
    THREAD_ID,
    TIME_TO_FIRST_TOKEN_S,
    USAGE_INPUT_TOKENS,
    USAGE_OUTPUT_TOKENS,
    call_stats,
)

# --- GenAI names of agent structure --------------------------------------------------
TOOL_NAME = "gen_ai.tool.name"
WORKFLOW_NAME = "gen_ai.workflow.name"
INPUT_MESSAGES = "gen_ai.input.messages"  # only with capture_content
OUTPUT_MESSAGES = "gen_ai.output.messages"  # only with capture_content

# --- LangGraph structure ------------------------------------------------------------
LG_NODE = "langgraph.node"
LG_STEP = "langgraph.step"
LG_CHECKPOINT_NS = "langgraph.checkpoint_ns"
