"""Demo orders: a believable spread of customers, countries, currencies and lifecycle stages.

Made through the same services as real orders (capture, verification, actions), so
every demo order has a proper timeline. Seeded once per tenant; a fixed random seed
keeps the data set the same on every machine.
"""

from __future__ import annotations

import random
from uuid import UUID

from sqlalchemy import exists, select

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core.db import Database
from orderdesk.core.tenancy import Scope
from orderdesk.orders import services
from orderdesk.orders.models import Channel, CheckResolution, Order
from orderdesk.orders.schemas import OrderCreate
from orderdesk.orders.states import Action, HoldReason
from orderdesk.tenants.models import Tenant

ORDERS_PER_TENANT = 36

CUSTOMERS = [
    (
        "Erika Mustermann",
        "erika.mustermann@example.com",
        "+49 30 901820",
        "DE",
        "Berlin",
        "10117",
        "Unter den Linden 12",
    ),
    (
        "James Okafor",
        "j.okafor@example.co.uk",
        "+44 20 7946 0321",
        "GB",
        "London",
        "SW1A 2AA",
        "10 Whitehall Pl",
    ),
    (
        "Camille Durand",
        "camille.durand@example.fr",
        "+33 1 44 55 66 77",
        "FR",
        "Paris",
        "75004",
        "8 Rue de Rivoli",
    ),
    ("Sofia Rossi", "sofia.rossi@example.it", "+39 06 6988 1234", "IT", "Roma", "00186", "Via del Corso 21"),
    ("Liam Tremblay", "liam.t@example.ca", "+1 613 555 0147", "CA", "Ottawa", "K1P 1J1", "99 Bank St"),
    ("Mia Jansen", "mia.jansen@example.nl", "+31 20 555 0198", "NL", "Amsterdam", "1012 AB", "Damrak 70"),
    ("Haruto Sato", "haruto.sato@example.jp", "+81 3-1234-5678", "JP", "Tokyo", "100-0005", "1-1 Marunouchi"),
    (
        "Ava Johnson",
        "ava.johnson@example.com",
        "+1 415 555 0132",
        "US",
        "San Francisco",
        "94105",
        "1 Market St",
    ),
]
CURRENCY = {
    "DE": "EUR",
    "FR": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "GB": "GBP",
    "CA": "CAD",
    "US": "USD",
    "JP": "JPY",
}
PRODUCTS = {
    "acme-outdoor": [
        ("TENT-2P", "Two-person tent", 19900),
        ("BAG-65L", "65 l trekking pack", 14900),
        ("STOVE-MINI", "Camping stove", 3900),
        ("MAT-AIR", "Air mattress", 5900),
    ],
    "borealis-tea": [
        ("TEA-SENCHA-100", "Sencha, 100 g", 1250),
        ("TEA-EARL-250", "Earl Grey, 250 g", 1890),
        ("POT-CAST", "Cast-iron teapot", 6400),
        ("CUP-SET", "Four porcelain cups", 3200),
    ],
    "kaze-cycles": [
        ("FRAME-ROAD-54", "Road frame 54 cm", 89900),
        ("WHEEL-700C", "700c wheelset", 42000),
        ("HELMET-M", "Helmet, size M", 7900),
        ("LIGHT-SET", "Front and rear lights", 4500),
    ],
}
# How far along each demo order goes: a spread over the whole lifecycle.
JOURNEYS = [
    [],
    [],
    [],
    [Action.VERIFY],
    [Action.VERIFY, Action.ALLOCATE],
    [Action.VERIFY, Action.ALLOCATE, Action.START_PICKING],
    [Action.VERIFY, Action.ALLOCATE, Action.START_PICKING, Action.PACK],
    [Action.VERIFY, Action.ALLOCATE, Action.START_PICKING, Action.PACK, Action.SHIP],
    [Action.VERIFY, Action.ALLOCATE, Action.START_PICKING, Action.PACK, Action.SHIP, Action.DELIVER],
    [
        Action.VERIFY,
        Action.ALLOCATE,
        Action.START_PICKING,
        Action.PACK,
        Action.SHIP,
        Action.DELIVER,
        Action.CLOSE,
    ],
    [Action.VERIFY, Action.BACKORDER],
    [Action.CANCEL],
    [
        Action.VERIFY,
        Action.ALLOCATE,
        Action.START_PICKING,
        Action.PACK,
        Action.SHIP,
        Action.DELIVER,
        Action.REQUEST_RETURN,
    ],
]


def _order_for(rng: random.Random, slug: str, index: int) -> OrderCreate:
    name, email, phone, country, city, postal, street = rng.choice(CUSTOMERS)
    currency = CURRENCY[country]
    lines = []
    for sku, description, price in rng.sample(PRODUCTS[slug], k=rng.randint(1, 3)):
        # Prices are cents; yen have no minor unit, so a 199.00 item costs about ¥30,000.
        unit = price * 150 // 100 // 100 * 100 if currency == "JPY" else price
        quantity = rng.randint(1, 3)
        lines.append(
            {
                "sku": sku,
                "description": description,
                "quantity": quantity,
                "unit_price_minor": unit,
                "tax_minor": unit * quantity * 19 // 100,
            }
        )
    return OrderCreate.model_validate(
        {
            "external_ref": f"{slug.upper()[:4]}-{10000 + index}",
            "customer": {"name": name, "email": email, "phone": phone},
            "shipping_address": {"line1": street, "city": city, "postal_code": postal, "country": country},
            "currency": currency,
            "lines": lines,
            "shipping_minor": 0 if currency == "JPY" else 495,
            "payment_status": rng.choice(["paid", "paid", "paid", "authorized", "pending"]),
            "priority": rng.choice(["normal"] * 6 + ["high", "urgent"]),
            "tags": rng.sample(["gift", "vip", "b2b", "promo", "repeat"], k=rng.randint(0, 2)),
        }
    )


async def seed_orders(db: Database, tenant_slugs: list[str]) -> int:
    """Create demo orders for the tenants that have none; returns how many were created."""
    created = 0
    for slug in tenant_slugs:
        async with db.transaction(Scope()) as session:
            tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None or slug not in PRODUCTS:
            continue
        actor = Actor(
            kind=ActorKind.SYSTEM, id=UUID(int=0), display_name="Demo data", tenant_ids=frozenset({tenant.id})
        )
        async with db.transaction(actor.scope) as session:
            if await session.scalar(select(exists().where(Order.tenant_id == tenant.id))):
                continue
        rng = random.Random(slug)
        for index in range(ORDERS_PER_TENANT):
            data = _order_for(rng, slug, index)
            channel = rng.choice([Channel.API, Channel.API, Channel.SHOP, Channel.AGENT, Channel.CSV])
            result = await services.capture_order(db, actor, data, channel=channel)
            order_id = UUID(result.body["id"])
            journey = JOURNEYS[index % len(JOURNEYS)]
            for action in journey:
                if action is Action.VERIFY:
                    for check in result.body["checks"]:
                        if check["result"] == "failed":
                            await services.decide_check(
                                db,
                                actor,
                                order_id,
                                check["check"],
                                CheckResolution.OVERRIDDEN,
                                "checked with the customer by phone",
                            )
                await services.perform_action(db, actor, order_id, action)
            if index % 11 == 5:
                await services.perform_action(
                    db,
                    actor,
                    order_id,
                    Action.PLACE_HOLD,
                    hold_reason=HoldReason.ADDRESS_PROBLEM,
                    note="Customer asked to correct the flat number",
                )
            created += 1
    return created
