"""`orderdesk comms configure` and `orderdesk smtp`, run as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid

from sqlalchemy import select

from orderdesk.comms.models import Message
from orderdesk.core.tenancy import Scope
from tests.conftest import make_tenant
from tests.integration.test_cli import cli_env, run_cli  # noqa: F401 (cli_env is a fixture)
from tests.support.email_fixtures import load


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"smtp exited early: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("smtp never listened")


async def test_configured_tenant_receives_mail_through_the_smtp_command(db, cli_env):  # noqa: F811
    tenant = await make_tenant(db, "Smtp Co")
    local = f"smtp{uuid.uuid4().hex[:8]}"
    env = {**cli_env, "ORDERDESK_INBOUND_DOMAINS": "mail.test"}
    configured = await asyncio.to_thread(
        run_cli,
        "comms",
        "configure",
        "--tenant",
        tenant.slug,
        "--local-part",
        local,
        "--rotate-secret",
        env=env,
    )
    assert configured.returncode == 0, configured.stderr
    assert f"{local}@mail.test" in configured.stdout
    assert configured.stdout.strip().splitlines()[-1].startswith("odin_")

    port = free_port()
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "orderdesk.cli", "smtp", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, port, process)
        raw = load("gmail_reply_quoted.eml", sender="kim@example.com", to=f"{local}@mail.test")

        def send() -> dict:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as connection:
                return connection.sendmail("kim@example.com", [f"{local}@mail.test"], raw)

        assert await asyncio.to_thread(send) == {}

        def refuse() -> int:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as connection:
                connection.ehlo()
                connection.mail("kim@example.com")
                return connection.rcpt(f"{local}@other.test")[0]

        assert await asyncio.to_thread(refuse) == 550
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    async with db.transaction(Scope.for_tenants(tenant.id)) as session:
        subjects = (await session.scalars(select(Message.subject))).all()
    assert subjects == ["Re: Your order #1042 has shipped"]


def test_a_port_in_use_is_one_clear_line(cli_env):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("smtp", "--port", str(port), env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot listen for SMTP on 127.0.0.1:{port}" in result.stderr


def test_configure_refuses_bad_values_with_one_line(cli_env):  # noqa: F811
    result = run_cli("comms", "configure", "--tenant", "no-such-tenant", "--local-part", "x", env=cli_env)
    assert result.returncode == 1 and "not found" in result.stderr.lower()


def test_the_new_commands_have_help():
    for command in (["smtp"], ["comms", "configure"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and "Usage: orderdesk" in result.stdout
