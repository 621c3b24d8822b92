"""The `orderdesk` command, run as a real process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import create_database, drop_database


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orderdesk.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli_env(settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ORDERDESK_SECRET_KEY": settings.secret_key,
        "ORDERDESK_ENV": "test",
    }


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["worker"],
        ["migrate"],
        ["demo"],
        ["tenant", "create"],
        ["user", "create-staff"],
        ["user", "create-client"],
        ["apikey", "create"],
    ],
)
def test_every_command_has_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: orderdesk" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "http"], "Invalid value for '--port'"),
        (["tenant", "create", "--slug", "x"], "Missing option '--name'"),
        (
            ["user", "create-staff", "--email", "a@b.co", "--name", "A", "--role", "boss", "--password", "x"],
            "Invalid value for '--role'",
        ),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, cli_env):
    result = run_cli(*args, env=cli_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"DATABASE_URL": "not a url at all"}, "DATABASE_URL is not a valid database URL"),
        (
            {"DATABASE_URL": "postgresql://localhost/x", "ORDERDESK_SECRET_KEY": "short"},
            "ORDERDESK_SECRET_KEY",
        ),
        ({"ORDERDESK_SECRET_KEY": "k" * 40}, "DATABASE_URL is not set"),
        (
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere", "ORDERDESK_SECRET_KEY": "k" * 40},
            "cannot reach the database",
        ),
    ],
)
def test_bad_configuration_gives_one_clear_line(env, message):
    result = run_cli("tenant", "list", env={"ORDERDESK_SECRET_KEY": "", **env})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


async def test_admin_commands_onboard_a_tenant_end_to_end(cli_env, client):
    slug = f"cli-{secrets.token_hex(3)}"
    created = run_cli(
        "tenant", "create", "--slug", slug, "--name", "CLI Co", "--time-zone", "Asia/Tokyo", env=cli_env
    )
    assert created.returncode == 0, created.stderr
    staff = run_cli(
        "user",
        "create-staff",
        "--email",
        f"lead@{slug}.example.com",
        "--name",
        "Lea",
        "--role",
        "lead",
        "--tenants",
        slug,
        "--languages",
        "en,ja",
        "--password",
        "a-long-password-1",
        env=cli_env,
    )
    assert staff.returncode == 0, staff.stderr
    dup = run_cli(
        "user",
        "create-staff",
        "--email",
        f"LEAD@{slug}.example.com",
        "--name",
        "Lea",
        "--role",
        "lead",
        "--password",
        "a-long-password-1",
        env=cli_env,
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr
    weak = run_cli(
        "user",
        "create-client",
        "--email",
        f"c@{slug}.example.com",
        "--name",
        "C",
        "--tenant",
        slug,
        "--password",
        "short",
        env=cli_env,
    )
    assert weak.returncode == 1 and "password must be at least 12 characters" in weak.stderr
    unknown = run_cli("apikey", "create", "--tenant", "no-such-tenant", "--name", "x", env=cli_env)
    assert unknown.returncode == 1 and "Tenant not found" in unknown.stderr
    key = run_cli("apikey", "create", "--tenant", slug, "--name", "WMS", env=cli_env)
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip().splitlines()[-1]
    assert secret.startswith("odk_") and " " not in secret
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    tenants = await client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {secret}"})
    assert [t["slug"] for t in tenants.json()] == [slug]
    assert tenants.json()[0]["time_zone"] == "Asia/Tokyo"


async def test_migrate_builds_a_fresh_database_and_can_run_again(service_urls, cli_env):
    name = f"orderdesk_cli_{secrets.token_hex(4)}"
    url = await create_database(service_urls.database_url, name)
    try:
        result = run_cli("migrate", env={**cli_env, "DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        assert "database migrated to head" in result.stdout
        again = run_cli("migrate", env={**cli_env, "DATABASE_URL": url})
        assert again.returncode == 0, again.stderr
    finally:
        await drop_database(service_urls.database_url, name)
