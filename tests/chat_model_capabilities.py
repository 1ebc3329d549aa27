"""Capability flags shared by the standard unit and integration suites."""


class AutellixCapabilities:
    """What ``AutellixChatModel`` declares to langchain-tests."""

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
