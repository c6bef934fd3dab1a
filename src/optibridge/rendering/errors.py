"""What rendering raises: a template that does not parse, a message that does not render."""

from __future__ import annotations


class TemplateSyntaxError(ValueError):
    """A template part does not parse; `part`, `line` and `reason` say where and why."""

    def __init__(self, part: str, line: int | None, reason: str) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {reason}")
        self.part = part
        self.line = line
        self.reason = reason


class RenderError(ValueError):
    """Rendering one message failed (missing attribute, limit hit); the reason is for the record."""


LIMITS_EXCEEDED = "template exceeded render limits"


class RenderLimitError(RenderError):
    """The template needed more than a render may take (time, loop iterations, range, output size).

    Its text starts with LIMITS_EXCEEDED, so a failed message's reason says so whatever the detail;
    `timed_out` tells a deadline from the other limits (the dispatcher then stops rendering that
    template for the rest of its slice).
    """

    def __init__(self, detail: str, *, part: str | None = None, timed_out: bool = False) -> None:
        super().__init__(f"{LIMITS_EXCEEDED} ({part}: {detail})" if part else f"{LIMITS_EXCEEDED} ({detail})")
        self.detail = detail
        self.part = part
        self.timed_out = timed_out


class TemplateRefusedError(ValueError):
    """A template parses but cannot be saved: it exceeds the limits or its JSON body is unsafe."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason
