"""Templates: Liquid (sandboxed, bounded) plus Optimove's `[%TAG%]` personalization tags."""

from optibridge.rendering.errors import (
    LIMITS_EXCEEDED,
    RenderError,
    RenderLimitError,
    TemplateRefusedError,
    TemplateSyntaxError,
)
from optibridge.rendering.offloop import in_render_thread
from optibridge.rendering.templates import (
    BUILTIN_VARIABLES,
    CompiledTemplate,
    TemplateCache,
    check_limits,
    compile_template,
)

__all__ = [
    "BUILTIN_VARIABLES",
    "LIMITS_EXCEEDED",
    "CompiledTemplate",
    "RenderError",
    "RenderLimitError",
    "TemplateCache",
    "TemplateRefusedError",
    "TemplateSyntaxError",
    "check_limits",
    "compile_template",
    "in_render_thread",
]
