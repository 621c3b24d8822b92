"""A demo data set: three client companies, their people and keys, and orders.

Seeding is idempotent: a database that already has the demo tenants is left as
it is (keys are only printed on the run that created them).
"""

from __future__ import annotations

from dataclasses import dataclass

from orderdesk.accounts import services as accounts
from orderdesk.accounts.models import ClientRole, StaffRole
from orderdesk.core.db import Database, make_engine
from orderdesk.core.errors import NotFound
from orderdesk.settings import Settings
from orderdesk.tenants import services as tenants
from orderdesk.wiring import connect_features


@dataclass(frozen=True)
class DemoTenant:
    slug: str
    name: str
    time_zone: str


DEMO_TENANTS = (
    DemoTenant("acme-outdoor", "Acme Outdoor Gear", "Europe/Berlin"),
    DemoTenant("borealis-tea", "Borealis Tea Co.", "America/Toronto"),
    DemoTenant("kaze-cycles", "Kaze Cycles", "Asia/Tokyo"),
)

STAFF = (
    ("admin@orderdesk.example.com", "Ada Admin", StaffRole.ADMIN, ()),
    (
        "lead@orderdesk.example.com",
        "Lars Lead",
        StaffRole.LEAD,
        ("acme-outdoor", "borealis-tea", "kaze-cycles"),
    ),
    ("agent@orderdesk.example.com", "Aiko Agent", StaffRole.AGENT, ("acme-outdoor", "kaze-cycles")),
    ("agent2@orderdesk.example.com", "Bo Agent", StaffRole.AGENT, ("borealis-tea",)),
)


async def seed_demo_data(settings: Settings, password: str) -> str:
    """Create the demo data set if absent; return what a person needs to sign in."""
    connect_features()
    db = Database(make_engine(settings.app_url, pool_size=2, application_name="orderdesk-demo"))
    try:
        system = await tenants.system_actor(db)
        try:
            await tenants.get_tenant_by_slug(db, system, DEMO_TENANTS[0].slug)
            created = False
        except NotFound:
            created = True
        keys: list[str] = []
        if created:
            keys = await _create(db, password)
        from orderdesk import demo_orders

        await demo_orders.seed_orders(db, [t.slug for t in DEMO_TENANTS])
        await seed_portal_demo(db)
        # Customer communication: inbound addresses and a few customer emails.
        from orderdesk.comms.demo import seed_comms

        slugs = [t.slug for t in DEMO_TENANTS]
        inbound_addresses = await seed_comms(db, slugs, settings.inbound_email_domains)
        # Outbound: a from-address, a where-is-my-order template and macros per tenant.
        from orderdesk.comms.outbound_demo import seed_outbound

        await seed_outbound(db, slugs)
    finally:
        await db.dispose()
    lines = ["Sign in with any of these (password: " + password + "):"]
    lines += [f"  {email:<34} {role.value}" for email, _, role, _ in STAFF]
    lines += [f"  {f'client@{t.slug}.example.com':<34} client admin of {t.name}" for t in DEMO_TENANTS]
    lines.append("Inbound email addresses: " + ", ".join(inbound_addresses))
    if keys:
        lines.append("API keys (shown once):")
        lines += [f"  {key}" for key in keys]
    # The customers' side: look an order up by its number and the customer's email or postal code.
    lines.append("Customer tracking pages:")
    lines += [f"  /track/{t.slug}" for t in DEMO_TENANTS]
    return "\n".join(lines)


async def _create(db: Database, password: str) -> list[str]:
    system = await tenants.system_actor(db)
    for t in DEMO_TENANTS:
        await tenants.create_tenant(db, system, slug=t.slug, name=t.name, time_zone=t.time_zone)
    system = await tenants.system_actor(db)
    for email, name, role, slugs in STAFF:
        await accounts.create_staff_user(
            db,
            system,
            email=email,
            display_name=name,
            password=password,
            role=role,
            tenant_slugs=list(slugs),
            languages=["en", "de"],
            channels=["email", "chat", "phone", "tracking"],
        )
    keys = []
    for t in DEMO_TENANTS:
        tenant = await tenants.get_tenant_by_slug(db, system, t.slug)
        await accounts.create_client_user(
            db,
            system,
            email=f"client@{t.slug}.example.com",
            display_name=f"{t.name} admin",
            password=password,
            tenant_id=tenant.id,
            role=ClientRole.ADMIN,
        )
        await accounts.create_client_user(
            db,
            system,
            email=f"viewer@{t.slug}.example.com",
            display_name=f"{t.name} viewer",
            password=password,
            tenant_id=tenant.id,
            role=ClientRole.VIEWER,
        )
        issued = await accounts.issue_api_key(db, system, tenant.id, "Demo integration")
        keys.append(f"{t.slug}: {issued.secret}")
    return keys


# ---------------------------------------------------------------- client portal demo

DEMO_ACCENTS = {"acme-outdoor": "#1f7a4d", "borealis-tea": "#8a4b14", "kaze-cycles": "#c2185b"}


async def seed_portal_demo(db: Database) -> None:
    """Each demo client gets its colour and one question from the lead waiting in its portal.

    Idempotent: a tenant that already has a question asked is left alone.
    """
    from sqlalchemy import exists, func, select

    from orderdesk.accounts.actors import Actor, ActorKind
    from orderdesk.accounts.models import User
    from orderdesk.core.tenancy import Scope
    from orderdesk.portal import decisions
    from orderdesk.portal.models import ClientDecision
    from orderdesk.tenants import branding
    from orderdesk.workqueue import services as workqueue
    from orderdesk.workqueue.models import WorkItem
    from orderdesk.workqueue.states import WorkItemKind, WorkItemStatus

    system = await tenants.system_actor(db)
    async with db.transaction(Scope()) as session:
        lead = await session.scalar(
            select(User).where(func.lower(User.email) == "lead@orderdesk.example.com")
        )
    for t in DEMO_TENANTS:
        try:
            tenant = await tenants.get_tenant_by_slug(db, system, t.slug)
        except NotFound:
            continue
        async with db.transaction(Scope(tenant_ids=frozenset({tenant.id}))) as session:
            if await session.scalar(select(exists().where(ClientDecision.tenant_id == tenant.id))):
                continue
            item_id = await session.scalar(
                select(WorkItem.id)
                .where(
                    WorkItem.tenant_id == tenant.id,
                    WorkItem.kind == WorkItemKind.EXCEPTION,
                    WorkItem.status == WorkItemStatus.OPEN,
                )
                .limit(1)
            )
        await branding.set_accent_colour(db, system, tenant.id, DEMO_ACCENTS.get(t.slug))
        if lead is None or item_id is None:
            continue
        actor = Actor(
            kind=ActorKind.STAFF,
            id=lead.id,
            display_name=lead.display_name,
            tenant_ids=frozenset({tenant.id}),
            staff_role=StaffRole.LEAD,
        )
        await workqueue.reassign_work_item(db, actor, item_id, lead.id)
        await decisions.ask_client(
            db,
            actor,
            item_id,
            "The customer's flat number is missing. Ship to the building's reception instead?",
        )
