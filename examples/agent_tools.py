"""A tool-using agent (LangChain's ``create_agent``) on the program-aware engine.

The agent loop (model -> tools -> model ...) is one program: its calls share the
program's attained service, so this agent waits behind nothing that started after it
and long agents do not starve short ones. Run it: ``python examples/agent_tools.py``.
"""

import os

from langchain.agents import create_agent
from langchain_core.tools import tool

from autellix_lg import AutellixChatModel

CITIES = {"paris": 18, "oslo": 4, "lima": 22}


@tool
def temperature(city: str) -> str:
    """Today's temperature in a city, in degrees Celsius."""
    value = CITIES.get(city.strip().lower())
    return f"{value} C" if value is not None else f"no data for {city}"


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


# The default model is SmolLM2-135M: tool calls are always well formed (guided
# decoding), the choice of tool and arguments is a 135M model's.
llm = AutellixChatModel(model=os.environ.get("AUTELLIX_MODEL", "smollm2"), temperature=0,
                        max_tokens=96)
agent = create_agent(llm, [temperature, add],
                     system_prompt="Answer with the tools; then answer briefly.")
result = agent.invoke({"messages": [("user", "What is the temperature in Paris?")]},
                      config={"recursion_limit": 8})
for message in result["messages"]:
    print(f"{message.type}: {message.content or message.tool_calls}")
