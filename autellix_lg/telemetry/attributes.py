"""Span attribute names. ``gen_ai.*`` keys follow the OpenTelemetry GenAI semantic
conventions; ``autellix.*`` and ``langgraph.*`` are this project's."""

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as GenAI

# --- GenAI semantic conventions -----------------------------------------------------
OPERATION = GenAI.GEN_AI_OPERATION_NAME  # "chat", "invoke_workflow", "execute_tool"
PROVIDER = GenAI.GEN_AI_PROVIDER_NAME  # "autellix"
REQUEST_MODEL = GenAI.GEN_AI_REQUEST_MODEL
RESPONSE_MODEL = GenAI.GEN_AI_RESPONSE_MODEL
REQUEST_MAX_TOKENS = GenAI.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE = GenAI.GEN_AI_REQUEST_TEMPERATURE
RESPONSE_FINISH_REASONS = GenAI.GEN_AI_RESPONSE_FINISH_REASONS
USAGE_INPUT_TOKENS = GenAI.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS = GenAI.GEN_AI_USAGE_OUTPUT_TOKENS
CONVERSATION_ID = GenAI.GEN_AI_CONVERSATION_ID  # LangGraph's configurable thread_id
TOOL_NAME = "gen_ai.tool.name"
WORKFLOW_NAME = "gen_ai.workflow.name"
INPUT_MESSAGES = "gen_ai.input.messages"  # only with capture_content
OUTPUT_MESSAGES = "gen_ai.output.messages"  # only with capture_content

# --- Autellix: program scheduling (shared with the server's spans) -----------------
from autellix_engine.telemetry import (  # noqa: E402, F401 - re-exported names
    CALL_ID,
    CALL_STATS_PREFIX,
    DECODE_S,
    POLICY,
    PREEMPTIONS,
    PREFILL_S,
    PROGRAM_ID,
    QUEUE_LEVEL,
    QUEUE_START_LEVEL,
    QUEUE_WAIT_S,
    SERVICE,
    THREAD_ID,
    TIME_TO_FIRST_TOKEN_S,
    call_stats,
)

# --- LangGraph structure ------------------------------------------------------------
LG_NODE = "langgraph.node"
LG_STEP = "langgraph.step"
LG_CHECKPOINT_NS = "langgraph.checkpoint_ns"
