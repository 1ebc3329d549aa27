"""LangGraph integration (``AutellixChatModel`` and program tagging): issue #3."""
