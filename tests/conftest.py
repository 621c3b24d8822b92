"""Shared fixtures: real PostgreSQL and Redis, a fresh migrated database per run.

The database is built by `alembic upgrade head`, never by create_all, so every
run exercises the migrations. Tests create their own tenants with unique slugs
instead of truncating tables, which keeps them independent and fast.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from orderdesk import devservices
from orderdesk.accounts import services as accounts
from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole, StaffRole
from orderdesk.comms import services as comms
from orderdesk.core.db import Database, make_engine
from orderdesk.core.migrations import upgrade
from orderdesk.settings import Settings, load_settings
from orderdesk.tenants import services as tenants
from orderdesk.tenants.models import Tenant

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def service_urls() -> Iterator[devservices.ServiceUrls]:
    with devservices.test_services() as urls:
        yield urls


@pytest.fixture(scope="session", autouse=True)
def _test_password_hashed_once() -> Iterator[None]:
    """Hash PASSWORD once for every person the tests create, instead of once per person.

    Hashing is argon2id at production cost, tens of milliseconds of CPU, and a test's
    `world` alone creates seven people. Each stored hash is still a real argon2id hash of
    PASSWORD, which sign-in verifies for real; only the salt is shared. Any other
    password is hashed as usual.
    """
    real_hash = accounts.hash_password
    shared_hash = real_hash(PASSWORD)

    def hash_password(password: str) -> str:
        return shared_hash if password == PASSWORD else real_hash(password)

    patch = pytest.MonkeyPatch()
    patch.setattr(accounts, "hash_password", hash_password)
    yield
    patch.undo()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server; return its owner URL."""
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def owner_url(service_urls) -> AsyncIterator[str]:
    name = f"orderdesk_test_{secrets.token_hex(4)}"
    url = await create_database(service_urls.database_url, name)
    await asyncio.to_thread(upgrade, url)
    yield url
    await drop_database(service_urls.database_url, name)


@pytest.fixture(scope="session")
def settings(owner_url, service_urls) -> Settings:
    return load_settings(
        {
            "DATABASE_URL": owner_url,
            "REDIS_URL": service_urls.redis_url,
            "ORDERDESK_SECRET_KEY": "test-secret-key-" + "x" * 32,
            "ORDERDESK_ENV": "test",
            "ORDERDESK_QUEUE": f"orderdesk-test-{secrets.token_hex(4)}",
            "ORDERDESK_LOG_JSON": "true",
            "ORDERDESK_LOG_LEVEL": "WARNING",
        }
    )


@pytest.fixture(scope="session")
async def db(settings) -> AsyncIterator[Database]:
    from orderdesk.wiring import connect_features

    connect_features()
    database = Database(make_engine(settings.app_url, pool_size=5))
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def owner_connection(owner_url) -> AsyncIterator[asyncpg.Connection]:
    """A superuser/owner connection for arranging state the app may not touch (e.g. clocks)."""
    connection = await asyncpg.connect(_asyncpg_dsn(owner_url))
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
def shared_app(settings) -> Litestar:
    """One app for every test's `client`: building one (routes, schemas, templates) costs
    about as much CPU as a typical test."""
    from orderdesk.app import create_app

    return create_app(settings)


@pytest.fixture
async def client(shared_app, settings) -> AsyncIterator[AsyncTestClient]:
    """A client of the shared app, started afresh for the test (its own connection pool and
    queue), with the process-wide settings create_app makes: a test before may have changed
    them (tracking links, logging)."""
    from orderdesk.app import configure_process

    configure_process(settings)
    async with AsyncTestClient(app=shared_app, base_url="http://testserver.local") as c:
        yield c


@pytest.fixture
def app_client_factory(settings):
    """Open extra clients (one per signed-in person) on a fresh app instance."""
    from orderdesk.app import create_app

    def open_client() -> AsyncTestClient:
        return AsyncTestClient(app=create_app(settings), base_url="http://testserver.local")

    return open_client


# ---------------------------------------------------------------- people and tenants


@dataclass
class Person:
    email: str
    password: str
    id: uuid.UUID


@dataclass
class World:
    """Two tenants, each with an agent, a client admin, a client viewer and an API key."""

    a: Tenant
    b: Tenant
    agent_a: Person
    agent_b: Person
    lead_a: Person
    client_admin_a: Person
    client_viewer_a: Person
    client_admin_b: Person
    admin: Person
    key_a: str
    key_b: str
    key_a_id: uuid.UUID
    key_b_id: uuid.UUID

    def lead_a_actor(self) -> Actor:
        """A's lead as the services see a signed-in lead, for calling them directly."""
        return Actor(
            kind=ActorKind.STAFF,
            id=self.lead_a.id,
            display_name="Lena Lead",
            tenant_ids=frozenset({self.a.id}),
            staff_role=StaffRole.LEAD,
        )


def unique(prefix: str) -> str:
    # Six bytes: the suite makes thousands of people and tenants in one database, and with
    # three bytes two of them drew the same e-mail address in a full run.
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture
async def system(db):
    return await tenants.system_actor(db)


async def make_tenant(db, name: str = "Tenant") -> Tenant:
    actor = await tenants.system_actor(db)
    return await tenants.create_tenant(db, actor, slug=unique("t"), name=name, time_zone="Europe/Berlin")


async def make_staff(db, role: StaffRole, *tenant_rows: Tenant) -> Person:
    actor = await tenants.system_actor(db)
    email = f"{unique(role.value)}@ops.example.com"
    user = await accounts.create_staff_user(
        db,
        actor,
        email=email,
        display_name=f"{role.value.title()} {email[:10]}",
        password=PASSWORD,
        role=role,
        tenant_slugs=[t.slug for t in tenant_rows],
        languages=["en"],
        channels=["email"],
    )
    return Person(email, PASSWORD, user.id)


async def make_client_user(db, tenant: Tenant, role: ClientRole) -> Person:
    actor = await tenants.system_actor(db)
    email = f"{unique('client')}@{tenant.slug}.example.com"
    user = await accounts.create_client_user(
        db,
        actor,
        email=email,
        display_name=f"Client {role.value}",
        password=PASSWORD,
        tenant_id=tenant.id,
        role=role,
    )
    return Person(email, PASSWORD, user.id)


@dataclass
class CustomerEmail:
    """A tenant's inbound email set-up, as configure_customer_email left it."""

    local_part: str
    secret: str | None  # the inbound webhook secret, when one was rotated


async def configure_customer_email(
    db, tenant_id: uuid.UUID, *, prefix: str = "shop", **fields
) -> CustomerEmail:
    """Give a tenant an inbound address of its own (a unique local part) and any other comms
    settings `fields` name, as an operations admin would."""
    actor = await tenants.system_actor(db)
    local_part = unique(prefix)
    _settings, secret = await comms.configure_comms(
        db, actor, tenant_id, inbound_local_part=local_part, **fields
    )
    return CustomerEmail(local_part, secret)


@pytest.fixture
async def world(db) -> World:
    a = await make_tenant(db, "Acme Outdoor")
    b = await make_tenant(db, "Borealis Tea")
    actor = await tenants.system_actor(db)
    key_a = await accounts.issue_api_key(db, actor, a.id, "A sync")
    key_b = await accounts.issue_api_key(db, actor, b.id, "B sync")
    return World(
        a=a,
        b=b,
        agent_a=await make_staff(db, StaffRole.AGENT, a),
        agent_b=await make_staff(db, StaffRole.AGENT, b),
        lead_a=await make_staff(db, StaffRole.LEAD, a),
        client_admin_a=await make_client_user(db, a, ClientRole.ADMIN),
        client_viewer_a=await make_client_user(db, a, ClientRole.VIEWER),
        client_admin_b=await make_client_user(db, b, ClientRole.ADMIN),
        admin=await make_staff(db, StaffRole.ADMIN),
        key_a=key_a.secret,
        key_b=key_b.secret,
        key_a_id=key_a.key.id,
        key_b_id=key_b.key.id,
    )


CSRF_FIELD_PATTERN = re.compile(r'name="_csrf" value="([^"]+)"')


async def sign_in(client: AsyncTestClient, person: Person, password: str | None = None):
    """Sign in through the real form (pre-session CSRF cookie included); returns the response."""
    page = await client.get("/sign-in")
    token = CSRF_FIELD_PATTERN.search(page.text).group(1)
    return await client.post(
        "/sign-in",
        data={"email": person.email, "password": password or person.password, "_csrf": token},
        follow_redirects=False,
    )


def session_csrf(page_html: str) -> str:
    """The session's CSRF token, as a signed-in page embeds it for htmx."""
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page_html)
    assert match, "signed-in page carries no CSRF token"
    return match.group(1)


def pytest_collection_modifyitems(config, items):
    # Browser tests need Chromium; without it they would fail, not skip: CI installs it.
    if os.environ.get("ORDERDESK_SKIP_BROWSER") == "1":
        skip = pytest.mark.skip(reason="ORDERDESK_SKIP_BROWSER=1")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)
