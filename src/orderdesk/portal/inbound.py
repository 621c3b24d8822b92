"""What the client needs to route customers' email to the desk: their inbound address(es)
the HTTP endpoint an inbound-parse service posts to, and the chat webhook. Read-only here: operations
admins set these up (`orderdesk comms configure`), and the inbound secret is shown once
to them, so the portal only says whether one is set."""

from __future__ import annotations

from dataclasses import dataclass

from orderdesk.accounts.actors import Actor
from orderdesk.comms import services as comms
from orderdesk.comms.outbound_models import OutboundSettings
from orderdesk.core.db import Database
from orderdesk.core.errors import NotFound


@dataclass(frozen=True, slots=True)
class InboundDetails:
    configured: bool
    addresses: list[str]
    # Where an inbound-parse service posts raw messages (site-relative; the page adds the host).
    http_endpoint_path: str | None
    secret_set: bool
    from_name: str | None
    from_address: str | None
    auto_answer_enabled: bool
    known_contacts: list[str]
    # The client's chat platform posts customers' chat messages here (site-relative).
    chat_webhook_path: str | None = None
    # Where our agents' chat replies are posted (the client's own endpoint).
    chat_reply_url: str | None = None


async def inbound_details(db: Database, actor: Actor, domains: tuple[str, ...]) -> InboundDetails:
    """The client tenant's inbound email set-up. Raises NotFound for an actor without one tenant."""
    tenant_id = actor.single_tenant_id
    if tenant_id is None:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        row = await comms.settings_in(session, tenant_id)
        outbound = await session.get(OutboundSettings, tenant_id)
    chat_connected = outbound is not None and outbound.chat_webhook_secret is not None
    chat = {
        "chat_webhook_path": f"/hooks/chat/{tenant_id}" if chat_connected else None,
        "chat_reply_url": outbound.chat_reply_url if chat_connected else None,
    }
    if row is None or not row.inbound_local_part:
        return InboundDetails(False, [], None, False, None, None, False, [], **chat)
    local = row.inbound_local_part
    addresses = [f"{local}@{domain}" for domain in domains] or [f"{local}@<inbound domain>"]
    return InboundDetails(
        configured=True,
        addresses=addresses,
        http_endpoint_path=f"/hooks/inbound-email?recipient={addresses[0]}",
        secret_set=row.inbound_secret_hash is not None,
        from_name=row.from_name,
        from_address=row.from_address,
        auto_answer_enabled=row.auto_answer_enabled,
        known_contacts=list(row.known_contacts or []),
        **chat,
    )
