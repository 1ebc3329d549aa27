"""Span attribute names. ``gen_ai.*`` keys follow the OpenTelemetry GenAI semantic
conventions; ``autellix.*`` and ``langgraph.*`` are this project's."""

from dataclasses import fields

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as GenAI

from autellix_engine.policy.calls import CallStats

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

# --- Autellix: program scheduling -------------------------------------------------
PROGRAM_ID = "autellix.program.id"
THREAD_ID = "autellix.thread.id"
CALL_ID = "autellix.call.id"
POLICY = "autellix.policy"
QUEUE_LEVEL = "autellix.queue.level"  # queue at completion (0 = top)
QUEUE_START_LEVEL = "autellix.queue.start_level"  # queue on arrival
QUEUE_WAIT_S = "autellix.queue.wait_s"  # unscheduled seconds in the engine
PREEMPTIONS = "autellix.preemptions"
SERVICE = "autellix.service"  # attained service of the call (policy's unit)
PREFILL_S = "autellix.engine.prefill_s"  # engine time computing the prompt
DECODE_S = "autellix.engine.decode_s"  # engine time decoding
TIME_TO_FIRST_TOKEN_S = "autellix.time_to_first_token_s"
#: Prefix of every ``CallStats`` field on a chat span (``autellix.call.<field>``).
CALL_STATS_PREFIX = "autellix.call."


def call_stats(stats: CallStats) -> dict[str, float | int]:
    """A call's statistics as span attributes: the named ones above, and every
    ``CallStats`` field (swap counters too) as ``autellix.call.<field>``, so a new
    statistic reaches the spans without a change here."""
    attrs: dict[str, float | int] = {
        QUEUE_LEVEL: stats.level, QUEUE_START_LEVEL: stats.start_level,
        QUEUE_WAIT_S: stats.queue_wait_s, PREEMPTIONS: stats.preemptions,
        SERVICE: stats.service, PREFILL_S: stats.prefill_s, DECODE_S: stats.decode_s,
    }
    for f in fields(stats):
        value = getattr(stats, f.name)
        if f.name == "swap":
            attrs |= {f"{CALL_STATS_PREFIX}swap.{g.name}": getattr(value, g.name)
                      for g in fields(value)}
        else:
            attrs[f"{CALL_STATS_PREFIX}{f.name}"] = value
    return attrs

# --- LangGraph structure ------------------------------------------------------------
LG_NODE = "langgraph.node"
LG_STEP = "langgraph.step"
LG_CHECKPOINT_NS = "langgraph.checkpoint_ns"
