"""Contacts: addresses the client keeps outside Optimove, loaded from CSV.

The CSV needs a `customer_id` column (also accepted: CustomerID); `email`, `phone` and
`device_token` columns fill the address used by e-mail, SMS and push channels; every other column
is kept as an attribute. Loading is an upsert in chunks (COPY into a staging table), so a file of
any size streams through in constant memory, and loading it again changes nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg

from optibridge.core.errors import ConfigError
from optibridge.core.text import ATTR_STRIP, address_refused, id_refused

Conn = psycopg.AsyncConnection[dict[str, Any]]
CHUNK = 10_000
ID_COLUMNS = ("customer_id", "customerid")
ADDRESS_COLUMNS = {"email": "email", "phone": "phone", "mobilephone": "phone", "device_token": "device_token"}


@dataclass(frozen=True)
class ImportReport:
    rows: int
    upserted: int
    skipped: int


def _rows(fh: TextIO, source: str) -> Iterator[tuple[str, str | None, str | None, str | None, str]]:
    reader = csv.DictReader(fh)
    if reader.fieldnames is None:
        raise ConfigError(f"{source}: empty file (a header row with customer_id is needed)")
    lower = {name: name.strip().lower() for name in reader.fieldnames}
    id_col = next((n for n, low in lower.items() if low in ID_COLUMNS), None)
    if id_col is None:
        raise ConfigError(f"{source}: no customer_id column in the header")
    for line, record in enumerate(reader, start=2):
        if None in record:
            raise ConfigError(f"{source}, line {line}: more fields than the header has")
        customer = (record.get(id_col) or "").strip()
        if not customer:
            raise ConfigError(f"{source}, line {line}: empty customer_id")
        if id_refused(customer):
            raise ConfigError(f"{source}, line {line}: customer_id holds a NUL or an invalid character")
        address: dict[str, str | None] = {"email": None, "phone": None, "device_token": None}
        attrs: dict[str, str] = {}
        for name, value in record.items():
            if name == id_col or name is None:
                continue
            target = ADDRESS_COLUMNS.get(lower[name])
            text = (value or "").strip()
            if target:
                # The same rules as addresses from Optimove (core.text): a control character in an
                # address is refused, never guessed at; ingest uses these addresses as they are.
                if text and address_refused(text):
                    raise ConfigError(f"{source}, line {line}: {target} holds a control character")
                address[target] = text or None
            elif text:
                attrs[name.strip()] = ATTR_STRIP.sub("", text)
        yield customer, address["email"], address["phone"], address["device_token"], json.dumps(attrs)


async def import_csv(conn: Conn, tenant_id: str, path: Path) -> ImportReport:
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    # One transaction for the whole file: a bad line anywhere leaves the contacts as they were.
    with fh:
        async with conn.transaction():
            upserted, total = await _stream(conn, tenant_id, fh, path)
    return ImportReport(rows=total, upserted=upserted, skipped=total - upserted)


async def _stream(conn: Conn, tenant_id: str, fh: TextIO, path: Path) -> tuple[int, int]:
    total = upserted = 0
    rows = _rows(fh, str(path))
    while True:
        chunk = []
        try:
            for row in rows:
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    break
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except csv.Error as exc:
            raise ConfigError(f"{path}: malformed CSV: {exc}") from None
        if not chunk:
            break
        total += len(chunk)
        upserted += await _upsert(conn, tenant_id, chunk)
    return upserted, total


async def _upsert(
    conn: Conn, tenant_id: str, chunk: list[tuple[str, str | None, str | None, str | None, str]]
) -> int:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS contacts_staging (customer_id text, email text, phone text, "
        "device_token text, attributes jsonb) ON COMMIT DELETE ROWS"
    )
    await conn.execute("TRUNCATE contacts_staging")
    async with conn.cursor().copy(
        "COPY contacts_staging (customer_id, email, phone, device_token, attributes) FROM STDIN"
    ) as copy:
        for row in chunk:
            await copy.write_row(row)
    # A later line for the same customer wins (DISTINCT ON keeps the last by position).
    cur = await conn.execute(
        """INSERT INTO contacts (tenant_id, customer_id, email, phone, device_token, attributes)
           SELECT DISTINCT ON (customer_id) %s, customer_id, email, phone, device_token, attributes
           FROM (SELECT *, row_number() OVER () AS n FROM contacts_staging) s
           ORDER BY customer_id, n DESC
           ON CONFLICT (tenant_id, customer_id) DO UPDATE
           SET email = EXCLUDED.email, phone = EXCLUDED.phone, device_token = EXCLUDED.device_token,
               attributes = EXCLUDED.attributes, updated_at = now()
           WHERE (contacts.email, contacts.phone, contacts.device_token, contacts.attributes)
                 IS DISTINCT FROM
                 (EXCLUDED.email, EXCLUDED.phone, EXCLUDED.device_token, EXCLUDED.attributes)""",
        (tenant_id,),
    )
    return cur.rowcount
