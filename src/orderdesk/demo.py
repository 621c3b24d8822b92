"""`orderdesk demo`: the whole platform on one machine, with demo data.

Without DATABASE_URL / REDIS_URL it starts private PostgreSQL and Redis servers in
a data folder (never on the standard ports), applies migrations, seeds three
client companies with people and orders, then runs the web server and a worker
as child processes. Ctrl-C or SIGTERM stops the children, then the servers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from orderdesk import devservices
from orderdesk.settings import SettingsError, load_settings

DEMO_DATABASE = "orderdesk"
DEMO_PASSWORD = "orderdesk-demo-1"
CHILD_STOP_TIMEOUT_S = 15


def _say(message: str) -> None:
    print(message, flush=True)


def _secret_key(data_dir: Path) -> str:
    if key := os.environ.get("ORDERDESK_SECRET_KEY"):
        return key
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


async def _ensure_database(server_url: str, name: str) -> str:
    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def run_demo(*, host: str, port: int, data_dir: str) -> None:
    """Run until interrupted. Raises SettingsError for bad configuration."""
    folder = Path(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    given_database = os.environ.get("DATABASE_URL") or None
    given_redis = os.environ.get("REDIS_URL") or None
    stop_requested = False

    def request_stop(signum, _frame) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Until the children run, a signal only asks us to stop at the next safe point.
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with devservices.local_services(folder, given_database, given_redis) as urls:
            database_url = (
                urls.database_url
                if given_database
                else asyncio.run(_ensure_database(urls.database_url, DEMO_DATABASE))
            )
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": urls.redis_url,
                "ORDERDESK_SECRET_KEY": _secret_key(folder),
                "ORDERDESK_ENV": os.environ.get("ORDERDESK_ENV", "dev"),
                "ORDERDESK_LOG_JSON": os.environ.get("ORDERDESK_LOG_JSON", "false"),
                # Emails link to this demo's own tracking pages.
                "ORDERDESK_PUBLIC_URL": os.environ.get("ORDERDESK_PUBLIC_URL") or f"http://{host}:{port}",
            }
            settings = load_settings(env)
            _say("applying migrations…")
            from orderdesk.cli import migrate_database

            asyncio.run(migrate_database(settings))
            from orderdesk.demo_data import seed_demo_data

            summary = asyncio.run(seed_demo_data(settings, DEMO_PASSWORD))
            if stop_requested:
                return
            _run_children(env, host, port, summary, lambda: stop_requested, request_stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _run_children(env, host, port, summary, should_stop, request_stop) -> None:
    command = [sys.executable, "-m", "orderdesk.cli"]
    smtp_port = int(env.get("ORDERDESK_SMTP_PORT") or 0) or _free_port(host)
    # Our own command line, with our own arguments: nothing untrusted reaches it.
    children = [
        subprocess.Popen([*command, "serve", "--host", host, "--port", str(port)], env=env),  # noqa: S603
        subprocess.Popen([*command, "worker"], env=env),  # noqa: S603
        # Inbound customer email (comms/): ORDERDESK_SMTP_PORT if set, else a free port.
        subprocess.Popen([*command, "smtp", "--port", str(smtp_port)], env=env),  # noqa: S603
    ]
    try:
        _say("")
        _say(f"OrderDesk is running on http://{host}:{port}")
        _say(f"Inbound email (SMTP) on {host}:{smtp_port}")
        _say(summary)
        _say("Press Ctrl-C to stop.")
        while not should_stop():
            if any(child.poll() is not None for child in children):
                _say("a child process stopped; shutting down")
                break
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        _say("stopped web, worker and SMTP listener; stopping the servers…")


__all__ = ["SettingsError", "run_demo"]
