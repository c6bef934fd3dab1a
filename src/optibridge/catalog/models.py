"""What a template is, checked at the door: a template that does not parse is refused with the
part, line and reason, before anything is stored or sent to Optimove."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optibridge.core.config import describe_validation_error
from optibridge.core.errors import ConfigError
from optibridge.rendering import CompiledTemplate, TemplateSyntaxError, compile_template

MAX_TEMPLATE_ID = 2**31 - 1
# The SMS aggregator flow's built-in template (its body is the prepared text Optimove sends,
# intake/aggregator_batch.py). It is ours, not the tenant's: no tenant template may take its id,
# and the catalog sync never tells Optimove about it (sync.plan_templates).
RESERVED_TEMPLATE_ID = MAX_TEMPLATE_ID


class TemplateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: int = Field(gt=0, le=MAX_TEMPLATE_ID)
    name: str = Field(min_length=1, max_length=255)
    body: str = Field(min_length=1, max_length=1_000_000)
    subject: str | None = Field(default=None, max_length=1000)
    text_body: str | None = Field(default=None, max_length=1_000_000)
    app_id: str | None = Field(default=None, min_length=1, max_length=255)
    defaults: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any], source: str) -> TemplateSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, source)) from None


def parts_for(kind: str, spec: TemplateSpec) -> dict[str, str | None]:
    """Template parts by channel kind: e-mail has a subject, an HTML body and a text body."""
    if kind == "email":
        return {"subject": spec.subject, "html": spec.body, "text": spec.text_body}
    if kind == "push":
        return {"title": spec.subject, "text": spec.body}
    return {"text": spec.body}


def json_parts_for(kind: str) -> frozenset[str]:
    """The parts that render a JSON document: a webhook's body (every value JSON-escaped)."""
    return frozenset({"text"}) if kind == "webhook" else frozenset()


def compile_spec(kind: str, spec: TemplateSpec) -> CompiledTemplate:
    """Compile, or raise ConfigError naming the template, part, line and reason."""
    if kind == "email" and not spec.subject:
        raise ConfigError(f"template {spec.template_id}: an e-mail template needs a subject")
    try:
        return compile_template(
            parts_for(kind, spec), defaults=spec.defaults, json_parts=json_parts_for(kind)
        )
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template {spec.template_id} does not parse: {exc}") from None
