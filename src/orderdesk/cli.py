"""The `orderdesk` command: serve, worker, migrate, demo, and administration.

Every failure a person can cause (bad argument, bad setting, unreachable
database) ends with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from orderdesk.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandFailed(click.ClickException):
    """A command could not do its job; the message is the one line the user sees."""


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise CommandFailed(f"configuration error: {exc}") from None


def _run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    from orderdesk.core.errors import DomainError, ValidationFailed

    try:
        return asyncio.run(coroutine_factory())
    except SettingsError as exc:
        raise CommandFailed(f"configuration error: {exc}") from None
    except ValidationFailed as exc:
        raise CommandFailed("; ".join(f"{e.field} {e.message}" for e in exc.errors)) from None
    except DomainError as exc:
        raise CommandFailed(exc.detail) from None
    except (OSError, ConnectionError) as exc:
        raise CommandFailed(f"cannot reach the database or Redis: {exc}") from None
    except Exception as exc:
        if _is_connection_error(exc):
            raise CommandFailed(f"cannot reach the database: {_first_line(exc)}") from None
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_connection_error(exc: BaseException) -> bool:
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            (
                OSError,
                asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidCatalogNameError,
                OperationalError,
                InterfaceError,
            ),
        ):
            return True
        if isinstance(seen, DBAPIError) and "connect" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _with_database(
    settings: Settings, work: Callable[[Any], Awaitable[T]], *, owner: bool = False
) -> T:
    from orderdesk.core.db import Database, make_engine
    from orderdesk.wiring import connect_features

    connect_features()
    url = settings.owner_url if owner else settings.app_url
    db = Database(make_engine(url, pool_size=2, application_name="orderdesk-cli"))
    try:
        return await work(db)
    finally:
        await db.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """OrderDesk: the order desk for outsourced operations.

    Settings come from the environment: DATABASE_URL (owner, for migrations),
    APP_DATABASE_URL or APP_DATABASE_PASSWORD (the application role), REDIS_URL,
    ORDERDESK_SECRET_KEY.
    """


# ---------------------------------------------------------------- processes


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Web processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the web console, portal and API."""
    import uvicorn

    settings = _settings()
    _run(lambda: _check_database(settings))
    uvicorn.run(
        "orderdesk.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=True,
    )


async def _check_database(settings: Settings) -> None:
    from sqlalchemy import text

    async def probe(db) -> None:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    await _with_database(settings, probe)


@cli.command()
def worker() -> None:
    """Run the background worker (jobs and periodic sweeps)."""
    from arq.worker import Worker

    from orderdesk.worker import worker_settings

    settings = _settings()
    _run(lambda: _check_database(settings))
    Worker(**worker_settings(settings)).run()


@cli.command()
@click.option("--host", default=None, help="Address to listen on [default: ORDERDESK_SMTP_HOST, 127.0.0.1].")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one [default: ORDERDESK_SMTP_PORT or 2525].",
)
def smtp(host: str | None, port: int | None) -> None:
    """Run the inbound SMTP listener: customers' mail to tenants' inbound addresses."""
    from orderdesk.comms.smtp import run_smtp_server

    settings = _settings()
    _run(lambda: _check_database(settings))
    _run(
        lambda: run_smtp_server(
            settings, host=host or settings.smtp_host, port=settings.smtp_port if port is None else port
        )
    )


@cli.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(revision: str) -> None:
    """Apply database migrations (as the owner in DATABASE_URL)."""
    settings = _settings()
    _run(lambda: migrate_database(settings, revision))
    click.echo(f"database migrated to {revision}")


async def migrate_database(settings: Settings, revision: str = "head") -> None:
    """Upgrade the schema and give the application role its password, if one is set."""
    from orderdesk.core.migrations import upgrade

    await asyncio.to_thread(upgrade, settings.owner_url.render_as_string(hide_password=False), revision)
    if settings.app_database_password:
        from sqlalchemy import text

        async def set_password(db) -> None:
            async with db.engine.begin() as connection:
                role = settings.app_database_role
                password = settings.app_database_password.replace("'", "''")
                await connection.execute(text(f"ALTER ROLE {role} WITH LOGIN PASSWORD '{password}'"))

        await _with_database(settings, set_password, owner=True)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    default=".orderdesk",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where embedded PostgreSQL and Redis keep their data.",
)
def demo(host: str, port: int, data_dir: str) -> None:
    """Run everything with demo data: database, Redis, migrations, web and worker.

    Without DATABASE_URL/REDIS_URL, embedded PostgreSQL and Redis are started in
    --data-dir and stopped on Ctrl-C or SIGTERM.
    """
    from orderdesk.demo import run_demo

    try:
        run_demo(host=host, port=port, data_dir=data_dir)
    except SettingsError as exc:
        raise CommandFailed(f"configuration error: {exc}") from None


# ---------------------------------------------------------------- administration


@cli.group()
def tenant() -> None:
    """Onboard and list client companies."""


@tenant.command("create")
@click.option("--slug", required=True, help="Short unique name, e.g. acme.")
@click.option("--name", required=True, help="The company's name.")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin.")
def tenant_create(slug: str, name: str, time_zone: str) -> None:
    """Create a tenant."""
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        return await services.create_tenant(db, actor, slug=slug, name=name, time_zone=time_zone)

    created = _run(lambda: _with_database(settings, work))
    click.echo(f"created tenant {created.slug} ({created.id})")


@tenant.command("list")
def tenant_list() -> None:
    """List every tenant."""
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        return await services.list_tenants(db, await services.system_actor(db))

    for t in _run(lambda: _with_database(settings, work)):
        click.echo(f"{t.slug}\t{t.name}\t{t.time_zone}\t{t.id}")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@cli.group()
def user() -> None:
    """Create staff and client users."""


@user.command("create-staff")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--role", type=click.Choice(["agent", "lead", "admin"]), required=True)
@click.option("--tenants", default="", help="Comma-separated tenant slugs to assign.")
@click.option("--languages", default="", help="Comma-separated language codes, e.g. en,de.")
@click.option("--channels", default="", help="Comma-separated channels, e.g. email,chat,phone.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 12 characters; asked for when omitted.",
)
def user_create_staff(email, display_name, role, tenants, languages, channels, password) -> None:
    """Create an agent, lead or admin."""
    from orderdesk.accounts import services as accounts
    from orderdesk.accounts.models import StaffRole
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        return await accounts.create_staff_user(
            db,
            actor,
            email=email,
            display_name=display_name,
            password=password,
            role=StaffRole(role),
            tenant_slugs=_csv(tenants),
            languages=_csv(languages),
            channels=_csv(channels),
        )

    created = _run(lambda: _with_database(settings, work))
    click.echo(f"created {role} {created.email} ({created.id})")


@user.command("create-client")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--role", type=click.Choice(["viewer", "admin"]), default="viewer", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 12 characters; asked for when omitted.",
)
def user_create_client(email, display_name, tenant_slug, role, password) -> None:
    """Create a client-portal user bound to one tenant."""
    from orderdesk.accounts import services as accounts
    from orderdesk.accounts.models import ClientRole
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        tenant_row = await services.get_tenant_by_slug(db, actor, tenant_slug)
        return await accounts.create_client_user(
            db,
            actor,
            email=email,
            display_name=display_name,
            password=password,
            tenant_id=tenant_row.id,
            role=ClientRole(role),
        )

    created = _run(lambda: _with_database(settings, work))
    click.echo(f"created client {role} {created.email} ({created.id})")


@cli.group()
def apikey() -> None:
    """Issue tenant API keys."""


@apikey.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--name", required=True, help="What the key is for, e.g. 'WMS sync'.")
def apikey_create(tenant_slug: str, name: str) -> None:
    """Create a key. It is printed once, alone on the last line; store it now."""
    from orderdesk.accounts import services as accounts
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        tenant_row = await services.get_tenant_by_slug(db, actor, tenant_slug)
        return await accounts.issue_api_key(db, actor, tenant_row.id, name)

    issued = _run(lambda: _with_database(settings, work))
    click.echo(f"created API key {issued.key.prefix}… for {tenant_slug}; it will not be shown again:")
    click.echo(issued.secret)


@cli.group()
def shop() -> None:
    """Connect client shops whose order webhooks become orders."""


@shop.command("connect")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--domain", required=True, help="The shop's myshopify.com domain, e.g. acme.myshopify.com.")
@click.option(
    "--secret",
    prompt="Webhook signing secret",
    hide_input=True,
    help="The secret Shopify signs webhooks with; asked for when omitted (an argument shows in `ps`).",
)
def shop_connect(tenant_slug: str, domain: str, secret: str) -> None:
    """Connect a Shopify shop to a tenant, or replace a connected shop's secret."""
    from orderdesk.shops import services as shops
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        tenant_row = await services.get_tenant_by_slug(db, actor, tenant_slug)
        return await shops.connect_shop(
            db, actor, tenant_id=tenant_row.id, shop_domain=domain, webhook_secret=secret
        )

    connected = _run(lambda: _with_database(settings, work))
    view = connected.connection
    verb = "connected" if connected.created else "updated the secret of"
    click.echo(f"{verb} {view.shop_domain} for {tenant_slug} ({view.id})")
    click.echo(f"point the shop's orders/create webhook (JSON) at https://<this server>{view.webhook_path}")


@cli.group()
def comms() -> None:
    """Customer communication: a tenant's inbound email address and sending settings."""


@comms.command("configure")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option(
    "--local-part", default=None, help="Inbound address local part, e.g. acme (acme@<inbound domain>)."
)
@click.option("--from-name", default=None, help="Name outbound mail is sent as.")
@click.option("--from-address", default=None, help="Address outbound mail is sent from.")
@click.option("--auto-answer/--no-auto-answer", default=None, help="Allow safe automatic answers.")
@click.option("--order-number-pattern", default=None, help=r"Regex with one group, e.g. 'ACME-(\d+)'.")
@click.option("--known-contacts", default=None, help="Comma-separated addresses or @domains of client staff.")
@click.option("--rotate-secret", is_flag=True, help="Issue a new secret for the HTTP inbound endpoint.")
def comms_configure(
    tenant_slug,
    local_part,
    from_name,
    from_address,
    auto_answer,
    order_number_pattern,
    known_contacts,
    rotate_secret,
) -> None:
    """Set a tenant's communication settings; a new inbound secret is printed once."""
    from orderdesk.comms import services as comms_services
    from orderdesk.tenants import services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        tenant_row = await services.get_tenant_by_slug(db, actor, tenant_slug)
        return await comms_services.configure_comms(
            db,
            actor,
            tenant_row.id,
            inbound_local_part=local_part,
            from_name=from_name,
            from_address=from_address,
            auto_answer_enabled=auto_answer,
            order_number_pattern=order_number_pattern,
            known_contacts=_csv(known_contacts) if known_contacts is not None else None,
            rotate_inbound_secret=rotate_secret,
        )

    row, secret = _run(lambda: _with_database(settings, work))
    domains = settings.inbound_email_domains or ("<inbound domain>",)
    address = f"{row.inbound_local_part}@{domains[0]}" if row.inbound_local_part else "no inbound address"
    click.echo(f"{tenant_slug}: {address}; automatic answers {'on' if row.auto_answer_enabled else 'off'}")
    if secret:
        click.echo("inbound secret for POST /hooks/inbound-email (shown once):")
        click.echo(secret)


@cli.group()
def tracking() -> None:
    """Customers' tracking page."""


@tracking.command("link")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option(
    "--order", "number", required=True, type=click.IntRange(min=1), help="The order number, e.g. 1042."
)
@click.option(
    "--base-url", required=True, help="Where customers reach this server, e.g. https://desk.example.com."
)
@click.option(
    "--days", default=120, show_default=True, type=click.IntRange(min=1, max=3650), help="Validity."
)
def tracking_link(tenant_slug: str, number: int, base_url: str, days: int) -> None:
    """Print a signed tracking link to one order (to send a customer by hand)."""
    import datetime as dt

    from orderdesk.tenants import services
    from orderdesk.tracking import services as tracking_services

    settings = _settings()

    async def work(db):
        actor = await services.system_actor(db)
        return await tracking_services.tracking_url_for_number(
            db, actor, settings.secret_key, base_url, tenant_slug, number, lifetime=dt.timedelta(days=days)
        )

    click.echo(_run(lambda: _with_database(settings, work)))


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line per error, exit 2 for usage errors and 1 for failures."""
    try:
        cli.main(args=argv, prog_name="orderdesk", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=False)
        return 0
    except click.UsageError as exc:
        hint = (
            f" (see 'orderdesk {exc.ctx.command_path.partition(' ')[2]} --help')".replace("  ", " ")
            if exc.ctx
            else ""
        )
        click.echo(f"orderdesk: error: {exc.format_message()}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"orderdesk: error: {exc.format_message()}", err=True)
        return EXIT_FAILURE
    except click.exceptions.Abort:
        click.echo("orderdesk: aborted", err=True)
        return EXIT_FAILURE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
