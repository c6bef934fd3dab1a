"""The fault table (docs/reliability.md): real processes on loopback, see faultkit.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from faultkit import Cluster, Options, TcpPostgres, drop_postgres, new_postgres

MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture(scope="session")
def shared_pg() -> Iterator[TcpPostgres]:
    """One TCP PostgreSQL for the scenarios that do not stop it (a database each)."""
    pg, root = new_postgres()
    try:
        yield pg
    finally:
        drop_postgres(pg, root)


@pytest.fixture
def own_pg() -> Iterator[TcpPostgres]:
    """A PostgreSQL of this test alone, which it may crash and restart."""
    pg, root = new_postgres()
    try:
        yield pg
    finally:
        drop_postgres(pg, root)


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[MakeCluster]:
    """`await make_cluster(pg, Options(...))`: a started cluster, stopped after the test."""
    clusters: list[Cluster] = []

    async def make(pg: TcpPostgres, options: Options | None = None) -> Cluster:
        cluster = Cluster(pg, tmp_path / f"c{len(clusters)}", options)
        clusters.append(cluster)
        await cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            await cluster.stop()
