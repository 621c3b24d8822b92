"""A webhook endpoint disabled by the dispatcher is told to the tenant's client admins by email."""

from __future__ import annotations

from sqlalchemy import select

from orderdesk.accounts.models import ClientRole
from orderdesk.comms import sending
from orderdesk.comms.outbound_models import PlatformNotice
from orderdesk.core.tenancy import Scope
from tests.conftest import make_client_user
from tests.integration import test_webhooks as webhooks
from tests.integration.test_comms_outbound import policy_for
from tests.integration.test_orders_api import order_body
from tests.support.smtp_receiver import SmtpReceiver

# The webhook tests' fixtures, reused under their names.
http = webhooks.http
policy = webhooks.policy
receiver = webhooks.receiver
tenant_key = webhooks.tenant_key
wh_client = webhooks.wh_client


async def test_the_client_admins_are_emailed_when_an_endpoint_is_disabled(
    wh_client,
    db,
    http,
    policy,
    receiver,
    tenant_key,
):
    tenant, headers = tenant_key
    admin = await make_client_user(db, tenant, ClientRole.ADMIN)
    viewer = await make_client_user(db, tenant, ClientRole.VIEWER)

    async def gone(request, count):
        return 410, {}

    receiver.respond = gone
    endpoint = await webhooks.register(wh_client, headers, receiver.url)
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await webhooks.run_dispatch(db, http, policy, tenant)
    scope = Scope.for_tenants(tenant.id)
    with SmtpReceiver() as smtp:
        await sending.deliver_due(db, policy_for(smtp.port), scope)
    assert [m.rcpt_tos for m in smtp.handler.received] == [[admin.email]]
    assert viewer.email not in str([m.rcpt_tos for m in smtp.handler.received])
    mail = smtp.handler.received[0].message
    assert mail["From"] == "OrderDesk <ops@desk.example>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert receiver.url in mail["Subject"]
    body = mail.get_content()
    assert receiver.url in body and "410 Gone" in body and tenant.name in body
    async with db.transaction(scope) as session:
        notice = await session.scalar(select(PlatformNotice).where(PlatformNotice.tenant_id == tenant.id))
    assert notice.delivery_status.value == "sent" and notice.kind == "webhook_endpoint_disabled"
    assert endpoint["id"]
