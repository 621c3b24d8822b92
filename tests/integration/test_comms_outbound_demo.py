"""The demo's outbound data: seeded once, usable at once (a reply from the template renders)."""

from __future__ import annotations

from orderdesk.comms import outbound
from orderdesk.comms.outbound_demo import seed_outbound
from orderdesk.tenants import services as tenants
from tests.conftest import make_tenant
from tests.integration.test_workqueue import capture


async def test_seeding_twice_gives_one_template_and_two_macros_that_work(db):
    tenant = await make_tenant(db, "Demo Out")
    order = await capture(db, tenant)
    for _ in range(2):
        await seed_outbound(db, [tenant.slug])
    system = await tenants.system_actor(db)
    [template] = await outbound.list_templates(db, system, tenant.id)
    macros = await outbound.list_macros(db, system, tenant.id)
    assert [m.name for m in macros] == ["Answered: close", "Late delivery"]
    preview = await outbound.preview_template(db, system, template.id)
    assert preview.order_number == order["number"]
    assert f"Your order #{order['number']} is being checked." in preview.body
