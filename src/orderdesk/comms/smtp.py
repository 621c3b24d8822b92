"""The inbound SMTP listener (`orderdesk smtp`): mail for tenants' addresses, over real SMTP.

Refusals happen as early as the protocol allows, so the sending server keeps the
message and tells its sender: an unknown recipient at RCPT (550), an oversized
message at MAIL FROM when the client declares its SIZE, else at the end of DATA
(552). A failure on our side after DATA answers 451, a temporary error: the
sending server retries later, so nothing is lost, and redeliveries are deduplicated.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from orderdesk.comms import inbound
from orderdesk.comms.models import MAX_MESSAGE_BYTES
from orderdesk.core.db import Database
from orderdesk.core.errors import NotFound, TooLarge
from orderdesk.settings import SettingsError

log = structlog.get_logger("orderdesk.comms.smtp")

# Recipients per message: more is a mass mailing, not a customer writing.
MAX_RECIPIENTS = 20


class InboundMailHandler:
    """aiosmtpd handler: validates recipients, hands each accepted message to the pipeline."""

    def __init__(self, db: Database, domains: tuple[str, ...] = ()) -> None:
        self.db = db
        self.domains = domains

    async def handle_RCPT(self, server, session: Session, envelope: Envelope, address: str, rcpt_options):
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            recipient = await inbound.resolve_recipient(self.db, address, self.domains)
        except Exception:
            log.exception("smtp_recipient_lookup_failed", recipient=address)
            return "451 4.3.0 Temporary failure looking up the recipient, try again later"
        if recipient is None:
            log.info("smtp_recipient_refused", recipient=address, peer=str(session.peer))
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.resolved = getattr(envelope, "resolved", {})
        envelope.resolved[address] = recipient
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session: Session, envelope: Envelope):
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        if len(raw) > MAX_MESSAGE_BYTES:
            return "552 5.3.4 Message too big"
        resolved = getattr(envelope, "resolved", {})
        sender = envelope.mail_from if envelope.mail_from is not None else None
        try:
            for address in envelope.rcpt_tos:
                await inbound.receive_email(
                    self.db,
                    raw,
                    recipient=address,
                    domains=self.domains,
                    envelope_sender=sender,
                    resolved=resolved.get(address),
                    via="smtp",
                )
        except TooLarge:
            return "552 5.3.4 Message too big"
        except NotFound:
            # The address was removed between RCPT and DATA.
            return "550 5.1.1 No such mailbox here"
        except Exception:
            log.exception("smtp_delivery_failed", recipients=envelope.rcpt_tos)
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return "250 2.0.0 Message accepted"


async def start_smtp_server(
    db: Database, *, host: str, port: int, domains: tuple[str, ...] = ()
) -> asyncio.Server:
    """Listen on host:port (0 picks a free port) in the running event loop."""
    handler = InboundMailHandler(db, domains)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="orderdesk",
            ident="OrderDesk inbound",
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            # A stalled client must not hold a connection (and its memory) for long.
            timeout=120,
        ),
        host=host,
        port=port,
    )


async def run_smtp_server(settings, *, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (the `orderdesk smtp` command)."""
    from orderdesk.core.db import make_engine
    from orderdesk.web.logging import configure_logging
    from orderdesk.wiring import connect_features

    configure_logging(settings.log_level, json=settings.log_json)
    connect_features()
    db = Database(
        make_engine(
            settings.app_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            application_name="orderdesk-smtp",
        )
    )
    try:
        server = await start_smtp_server(db, host=host, port=port, domains=settings.inbound_email_domains)
    except OSError as exc:
        await db.dispose()
        raise SettingsError(f"cannot listen for SMTP on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    log.warning("smtp_listening", host=bound[0], port=bound[1], domains=list(settings.inbound_email_domains))
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await db.dispose()
