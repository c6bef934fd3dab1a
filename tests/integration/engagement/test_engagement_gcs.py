"""The GCS reader against the GCS emulator, through a recording proxy: every object read carries the
customer-supplied key (the emulator itself ignores it, see emulator/gcs.py), and records stream."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from engagementkit import BUCKET, KEY, put_files

from optibridge.emulator.gcs import running_gcs
from optibridge.intake.engagement_files import EngagementFiles, gcs_client
from optibridge.intake.engagement_payload import InvalidEngagement, customers_file_name, parse_metadata


@contextmanager
def recording_proxy(target: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
            request = urllib.request.Request(target + self.path, headers=dict(self.headers.items()))
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    body, status, headers = answer.read(), answer.status, answer.headers
            except urllib.error.HTTPError as exc:
                body, status, headers = exc.read(), exc.code, exc.headers
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_every_read_sends_the_customer_supplied_key_and_records_stream() -> None:
    with running_gcs() as gcs:
        meta = {"TemplateID": 1, "ScheduledTime": "2026-11-29T09:00:00Z", "NumberOfFiles": 2}
        files = [
            [{"CustomerID": f"C{i}", "Email": None, "FirstName": "A"} for i in range(1, 1001)],
            [{"CustomerID": "C1001", "Email": "x@y.test", "FirstName": None}],
        ]
        put_files(gcs.endpoint, "p", 5, meta, files)
        with recording_proxy(gcs.endpoint) as (proxy, seen):
            reader = EngagementFiles(gcs_client(proxy), BUCKET, KEY)
            assert parse_metadata(reader.metadata("p/metadata_5")).number_of_files == 2
            first = reader.records("p/customers", 1)
            assert next(first)["CustomerID"] == "C1"
            assert sum(1 for _ in first) == 999
            assert [r["CustomerID"] for r in reader.records("p/customers", 2)] == ["C1001"]
        # Object reads carry the key (the client also looks the bucket up once: no object data).
        objects = [h for h in seen if "/o/" in h[":path"]]
        assert len(objects) == 3
        key_b64 = base64.b64encode(KEY).decode()
        sha = base64.b64encode(hashlib.sha256(KEY).digest()).decode()
        for headers in objects:
            assert headers.get("x-goog-encryption-algorithm") == "AES256"
            assert headers.get("x-goog-encryption-key") == key_b64
            assert headers.get("x-goog-encryption-key-sha256") == sha


@pytest.mark.parametrize("damage", ["not avro", "truncated"])
def test_a_damaged_customer_file_is_a_clear_error(damage: str) -> None:
    with running_gcs() as gcs:
        records = [{"CustomerID": f"C{i}", "Email": "x@y.test", "FirstName": "A"} for i in range(5000)]
        put_files(gcs.endpoint, "d", 6, {"NumberOfFiles": 1}, [records])
        blob = (
            gcs_client(gcs.endpoint)
            .bucket(BUCKET)
            .blob(customers_file_name("d/customers", 1), encryption_key=KEY)
        )
        whole = blob.download_as_bytes()
        blob.upload_from_string(
            b"hello, not an avro file" if damage == "not avro" else whole[: len(whole) // 2]
        )
        reader = EngagementFiles(gcs_client(gcs.endpoint), BUCKET, KEY)
        with pytest.raises(InvalidEngagement, match="customer file 1 is not a readable Avro file"):
            for _ in reader.records("d/customers", 1):
                pass
