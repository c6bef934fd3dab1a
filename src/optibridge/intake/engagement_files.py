"""Event 14's files in Google Cloud Storage: the metadata JSON and the deflate Avro customer files.

Read with the official `google-cloud-storage` client (blocking: callers run these in a thread),
with the customer-supplied encryption key from the webhook's DecryptionKey on every request. One
customer file at a time is downloaded to a temporary file and decoded by `fastavro` record by
record, so memory stays flat whatever the number of files and rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from optibridge.intake.engagement_payload import InvalidEngagement, customers_file_name

if TYPE_CHECKING:
    from google.cloud import storage

PROJECT = "optimoveSDK"  # the project id Optimove's SDKs use [GH-eng-js index.js]
MAX_METADATA_BYTES = 1024 * 1024
SPOOL_BYTES = 8 * 1024 * 1024  # a customer file larger than this goes to disk while it is read


def gcs_client(endpoint: str | None) -> storage.Client:
    """The operator's endpoint (an emulator: anonymous credentials), or GCS with default credentials."""
    # Imported here: every process loads this module (bootstrap), few ever read GCS.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if endpoint:
        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint.rstrip("/")},
        )
    return storage.Client(project=PROJECT)


class EngagementFiles:
    """The files of one engagement. Every method blocks (network); run them in a thread."""

    def __init__(self, client: storage.Client, bucket: str, key: bytes | None) -> None:
        self._bucket = client.bucket(bucket)
        self._key = key

    def _blob(self, name: str) -> storage.Blob:
        return self._bucket.blob(name, encryption_key=self._key)

    def metadata(self, path: str) -> bytes:
        """The metadata file's bytes (at most 1 MiB: it is a few hundred bytes of JSON)."""
        data: bytes = self._blob(path).download_as_bytes(start=0, end=MAX_METADATA_BYTES)
        if len(data) > MAX_METADATA_BYTES:
            raise InvalidEngagement(f"metadata file larger than {MAX_METADATA_BYTES} bytes")
        return data

    def records(self, folder: str, number: int) -> Iterator[Any]:
        """The records of customer file `number`, one at a time."""
        import fastavro

        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            self._blob(customers_file_name(folder, number)).download_to_file(spool)
            spool.seek(0)
            try:
                yield from fastavro.reader(spool)
            except Exception as exc:
                # The file is local by now: any error is the file's (not Avro, truncated, a bad
                # deflate block). What was decoded before stands; the rest fails with this reason.
                why = f"{type(exc).__name__}: {exc}"[:300]
                raise InvalidEngagement(
                    f"customer file {number} is not a readable Avro file ({why})"
                ) from exc
