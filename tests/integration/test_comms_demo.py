"""The demo's communication data: addresses for every tenant, sample mail stored once."""

from __future__ import annotations

from sqlalchemy import func, select

from orderdesk.comms.demo import seed_comms
from orderdesk.comms.models import Message
from orderdesk.core.tenancy import Scope
from tests.conftest import make_tenant
from tests.integration.test_workqueue import capture


async def test_seeding_twice_gives_addresses_and_the_sample_mail_once(db):
    first = await make_tenant(db, "Demo One")
    second = await make_tenant(db, "Demo Two")
    order = await capture(db, first)
    for _ in range(2):
        addresses = await seed_comms(db, [first.slug, second.slug], ("demo.test",))
    assert addresses == [f"{first.slug}@demo.test", f"{second.slug}@demo.test"]
    async with db.transaction(Scope.for_tenants(first.id)) as session:
        placements = (await session.scalars(select(Message.placement).order_by(Message.created_at))).all()
        count = await session.scalar(select(func.count()).select_from(Message))
    assert count == 3
    assert placements[0] == "order_number"  # the customer of the tenant's first order asked about it
    assert order["number"] >= 1001
