"""Demo data for customer communication: inbound addresses and a few customer emails.

Safe to run on every `orderdesk demo` start: settings are set again to the same values
and the sample mails carry fixed Message-IDs, so redelivery stores nothing twice.
"""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select

from orderdesk.comms import inbound
from orderdesk.comms.services import configure_comms
from orderdesk.core.db import Database
from orderdesk.orders.models import Order
from orderdesk.tenants import services as tenants

DEMO_DOMAIN = "inbound.localhost"
SAMPLES = (
    (
        "Where is my order #{number}?",
        "Hello,\n\nwhere is my order {number}? It has not arrived yet.\n\nThanks",
    ),
    ("Bestellung {number} stornieren", "Hallo,\n\nbitte stornieren Sie meine Bestellung {number}.\n\nDanke"),
    ("Question", "Hi, do you also ship to Norway?\n\nSent from my iPhone"),
)


async def seed_comms(db: Database, slugs: list[str], domains: tuple[str, ...]) -> list[str]:
    """Give each demo tenant an inbound address (its slug); mail a few questions to the first."""
    system = await tenants.system_actor(db)
    domain = domains[0] if domains else DEMO_DOMAIN
    addresses = []
    for slug in slugs:
        tenant = await tenants.get_tenant_by_slug(db, system, slug)
        await configure_comms(db, system, tenant.id, inbound_local_part=slug, from_name=tenant.name)
        addresses.append(f"{slug}@{domain}")
    first = await tenants.get_tenant_by_slug(db, system, slugs[0])
    async with db.transaction(system.scope) as session:
        orders = (
            await session.execute(
                select(Order.number, Order.customer_email, Order.customer_name)
                .where(Order.tenant_id == first.id, Order.customer_email.is_not(None))
                .order_by(Order.number)
                .limit(2)
            )
        ).all()
    for index, (subject, body) in enumerate(SAMPLES):
        number, email, name = orders[index] if index < len(orders) else (0, "new.customer@example.com", "Sam")
        message = EmailMessage()
        message["From"] = f"{name} <{email}>"
        message["To"] = addresses[0]
        message["Subject"] = subject.format(number=number)
        message["Message-ID"] = f"<demo-{slugs[0]}-{index}@mail.example.com>"
        message.set_content(body.format(number=number))
        await inbound.receive_email(
            db, message.as_bytes(), recipient=addresses[0], domains=(domain,), via="demo"
        )
    return addresses
