"""Real PostgreSQL and Redis for the tests that need them, addressed through the environment.

``LABELING_DAG_TEST_PG_*`` and ``LABELING_DAG_TEST_REDIS_URL`` default to the servers on this
machine. A test that needs a server skips when it is unreachable, except under ``CI=true``,
where a missing server fails the run: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Postgres:
    """One fresh database on the test server."""

    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_MAX_CONCURRENT_RUNS": "4",
        }

    def connect(self, db: str | None = None):
        """A psycopg2 connection (autocommit) to ``db`` or this test's database."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=db or self.db
        )
        connection.autocommit = True
        return connection


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) when a server the test needs does not answer."""
    if _reachable(host, port):
        return
    message = f"{name} at {host}:{port} is not reachable"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must run this test (start the server, see .ci/run)")
    pytest.skip(message)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A database of its own, created for the test and dropped after it."""
    server = Postgres(
        host=os.environ.get("LABELING_DAG_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("LABELING_DAG_TEST_PG_PORT", "5432")),
        user=os.environ.get("LABELING_DAG_TEST_PG_USER", "postgres"),
        password=os.environ.get("LABELING_DAG_TEST_PG_PASSWORD", ""),
        db=f"labeling_dag_test_{uuid.uuid4().hex[:12]}",
    )
    require_server("PostgreSQL", server.host, server.port)
    # closing(): psycopg2's `with connection` opens a transaction, which CREATE DATABASE refuses.
    with closing(server.connect("postgres")) as admin, admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{server.db}"')
    try:
        yield server
    finally:
        # A new connection: the test may have restarted the server.
        with closing(server.connect("postgres")) as admin, admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{server.db}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """A Redis database number of its own on the test server, emptied first."""
    url = os.environ.get("LABELING_DAG_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
    parts = urlsplit(url)
    require_server("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


def postgres_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME holding the production instance config (deploy/dagster.yaml)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home
