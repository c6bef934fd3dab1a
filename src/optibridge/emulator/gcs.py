"""A Google Cloud Storage stand-in on loopback for event 14 (`gcp-storage-emulator` from PyPI).

It serves the GCS JSON API, in memory, from a thread of this process. It does NOT implement
customer-supplied encryption keys: it accepts and ignores the `x-goog-encryption-*` headers, so the
files it holds are plain and a read without the key would succeed there (against real GCS it fails).
Our reader sends the key all the same (tests check the header is on every request).

    with running_gcs() as gcs:
        gcs.endpoint   # "http://127.0.0.1:PORT": the service's gcs_api_endpoint
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optibridge.core.logs import get_logger
from optibridge.intake.engagement_files import gcs_client

if TYPE_CHECKING:
    from google.cloud import storage

log = get_logger(__name__)


@dataclass
class RunningGcs:
    endpoint: str
    server: Any

    def client(self) -> storage.Client:
        return anonymous_client(self.endpoint)

    def ensure_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(Exception):  # already there (409)
            client.create_bucket(name)


def anonymous_client(endpoint: str) -> storage.Client:
    """A client of the emulator: anonymous, never looking for GCP credentials."""
    return gcs_client(endpoint)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_gcs(host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningGcs]:
    """Start the GCS emulator in a thread of this process; stop it on exit."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    chosen = port or _free_port(host)
    server = create_server(host, chosen, in_memory=True)
    server.start()
    try:
        yield RunningGcs(f"http://{host}:{chosen}", server)
    finally:
        server.stop()
