"""The chat model every graph of this server uses: one per server process.

Imported as a regular module (``"dependencies": ["."]`` puts this folder on the path),
so the graph module and the custom routes share it. By default it embeds the engine
(one engine per server process, shared by every run); with ``AUTELLIX_BASE_URL`` it
calls a remote ``autellix serve`` instead. ``AUTELLIX_MODEL`` picks the model.
"""

import os

from autellix_lg import AutellixChatModel

llm = AutellixChatModel(
    model=os.environ.get("AUTELLIX_MODEL", "smollm2"),
    base_url=os.environ.get("AUTELLIX_BASE_URL") or None,
    temperature=0, max_tokens=48,
    # A conversation's KV stays cached through the user's think time.
    engine_config={"kv_retention": True},
)
