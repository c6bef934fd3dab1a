"""Templates: Liquid (sandboxed) plus Optimove's `[%TAG%]` personalization tags."""

from optibridge.rendering.templates import (
    BUILTIN_VARIABLES,
    CompiledTemplate,
    RenderError,
    TemplateCache,
    TemplateSyntaxError,
    compile_template,
)

__all__ = [
    "BUILTIN_VARIABLES",
    "CompiledTemplate",
    "RenderError",
    "TemplateCache",
    "TemplateSyntaxError",
    "compile_template",
]
