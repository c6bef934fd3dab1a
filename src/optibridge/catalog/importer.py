"""`templates import DIR`: a folder of template files, each with TOML front matter.

    +++
    id = 101
    name = "Welcome"
    channel = "email"          # optional when the file sits in a folder named after the channel
    subject = "Welcome, [%FirstName:friend%]"
    text = "Plain-text part (optional)"
    app_id = "my-app"          # push only
    [defaults]
    FirstName = "friend"
    +++
    <html>... the body ...</html>

Files are `*.liquid`, `*.html`, `*.txt` or `*.tmpl`, found recursively. Import is idempotent: an
unchanged template is left as it is (no new version, no sync).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from optibridge.catalog.models import TemplateSpec
from optibridge.core.errors import ConfigError

SUFFIXES = {".liquid", ".html", ".htm", ".txt", ".tmpl"}
FENCE = "+++"


@dataclass(frozen=True)
class TemplateFile:
    path: Path
    channel: str
    spec: TemplateSpec


def parse_file(path: Path, text: str, default_channel: str | None) -> TemplateFile:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        raise ConfigError(f"{path}: must start with a +++ line opening the TOML front matter")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == FENCE)
    except StopIteration:
        raise ConfigError(f"{path}: the front matter has no closing +++ line") from None
    try:
        meta = tomllib.loads("".join(lines[1:end]))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: front matter is not valid TOML: {exc}") from None
    body = "".join(lines[end + 1 :]).strip("\n")
    channel = meta.pop("channel", default_channel)
    if not isinstance(channel, str) or not channel:
        raise ConfigError(f"{path}: no channel (set `channel` or put the file in a channel folder)")
    data = {
        "template_id": meta.pop("id", None),
        "name": meta.pop("name", None),
        "subject": meta.pop("subject", None),
        "text_body": meta.pop("text", None),
        "app_id": meta.pop("app_id", None),
        "defaults": meta.pop("defaults", {}),
        "body": body,
    }
    if meta:
        raise ConfigError(f"{path}: unknown front matter keys: {', '.join(sorted(meta))}")
    spec = TemplateSpec.parse({k: v for k, v in data.items() if v is not None}, str(path))
    return TemplateFile(path, channel, spec)


def read_folder(folder: Path, channels: set[str]) -> list[TemplateFile]:
    """Every template file under `folder`; a file's parent folder named like a channel is its channel."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    found: list[TemplateFile] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES):
        default = path.parent.name if path.parent.name in channels else None
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        found.append(parse_file(path, text, default))
    seen: dict[tuple[str, int], Path] = {}
    for tf in found:
        key = (tf.channel, tf.spec.template_id)
        if key in seen:
            raise ConfigError(f"{tf.path} and {seen[key]} both define template {key[1]} of {key[0]}")
        seen[key] = tf.path
    return found
