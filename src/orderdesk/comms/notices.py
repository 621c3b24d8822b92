"""The platform's own emails to a tenant's people, sent by the same worker and SMTP path as replies.

The wording is the platform's (not a tenant template): these tell a client that
something on our side needs their attention.
"""

from __future__ import annotations

import datetime as dt
from email.utils import make_msgid
from uuid import UUID

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.models import ClientMembership, ClientRole, User
from orderdesk.comms.models import DeliveryStatus
from orderdesk.comms.outbound import notify_worker
from orderdesk.comms.outbound_models import PlatformNotice
from orderdesk.core.ids import new_id
from orderdesk.tenants.models import Tenant

log = structlog.get_logger("orderdesk.comms.notices")

WEBHOOK_DISABLED = "webhook_endpoint_disabled"

_WEBHOOK_DISABLED_TEXT = """Hello,

OrderDesk has stopped sending webhooks to this endpoint of {tenant}:

    {url}

Reason: {reason}.

Events that happen while it is disabled are kept. Once the receiving system
works again, enable the endpoint in OrderDesk (Webhooks) and replay the failed
deliveries, or ask your OrderDesk operations contact to do it.

This message was sent automatically to the administrators of {tenant}.
"""


async def client_admin_addresses(session: AsyncSession, tenant_id: UUID) -> list[str]:
    rows = await session.scalars(
        select(User.email)
        .join(ClientMembership, ClientMembership.user_id == User.id)
        .where(
            ClientMembership.tenant_id == tenant_id,
            ClientMembership.role == ClientRole.ADMIN,
            User.is_active,
        )
        .order_by(User.email)
    )
    return list(rows.all())


async def webhook_endpoint_disabled_in(
    session: AsyncSession, tenant_id: UUID, *, endpoint_id: UUID, url: str, reason: str
) -> int:
    """Queue one notice per client admin of the tenant, inside the caller's transaction.

    Returns how many were queued (none when the tenant has no admin to tell, logged).
    """
    tenant = await session.get(Tenant, tenant_id)
    addresses = await client_admin_addresses(session, tenant_id)
    now = dt.datetime.now(dt.UTC)
    for address in addresses:
        session.add(
            PlatformNotice(
                tenant_id=tenant_id,
                id=new_id(),
                kind=WEBHOOK_DISABLED,
                to_address=address,
                subject=f"Webhooks to {url[:200]} are disabled",
                text_body=_WEBHOOK_DISABLED_TEXT.format(
                    tenant=tenant.name if tenant else "your company", url=url, reason=reason
                ),
                provider_message_id=make_msgid(idstring=f"od-notice-{endpoint_id}"),
                delivery_status=DeliveryStatus.QUEUED,
                send_attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    if addresses:
        await notify_worker(session)
    else:
        log.warning("webhook_disabled_nobody_to_tell", tenant=str(tenant_id), endpoint=str(endpoint_id))
    return len(addresses)
