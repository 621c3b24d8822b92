"""Sending what the outbound side queued: replies by SMTP or to the chat endpoint, platform notices by SMTP.

Delivery semantics: at least once. A message is claimed with a lease (its
`next_attempt_at` pushed into the future under SKIP LOCKED), so two workers never
send it at the same time; a worker that dies after the mail server accepted and
before the result was stored sends it again when the lease runs out, with the same
Message-ID, which mail clients and our own inbound dedupe treat as one message.

Temporary failures (4xx replies, refused or dropped connections, timeouts,
authentication problems, 5xx from a chat endpoint) are retried on the configured
schedule; permanent ones (5xx from the mail server, 4xx from a chat endpoint) and
the last retry mark the message `failed` with the reason, where agents see it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from uuid import UUID

import aiosmtplib
import httpx
import structlog
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.comms import services as comms
from orderdesk.comms.models import CommsSettings, Conversation, DeliveryStatus, Message, MessageChannel
from orderdesk.comms.outbound_models import ChatThread, OutboundSettings, PlatformNotice
from orderdesk.core.db import Database
from orderdesk.core.tenancy import Scope
from orderdesk.integrations import urls
from orderdesk.tenants.branding import Branding, branding_in_session

log = structlog.get_logger("orderdesk.comms.sending")

LEASE = dt.timedelta(seconds=120)
BATCH = 20
JITTER = 0.1
CHAT_SIGNATURE_HEADER = "X-OrderDesk-Signature"


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """How to reach the mail server and when to give up; built from Settings."""

    host: str | None
    port: int
    tls: str
    user: str | None
    password: str | None
    timeout: float
    retry_schedule: tuple[float, ...]
    inbound_domain: str | None
    mail_from: str | None
    allow_private_chat_urls: bool = False
    # Where customers reach this deployment: the base of the logo's URL in branded emails.
    public_url: str | None = None

    @classmethod
    def from_settings(cls, settings) -> MailPolicy:
        return cls(
            host=settings.outbound_smtp_host,
            port=settings.outbound_smtp_port,
            tls=settings.outbound_smtp_tls,
            user=settings.outbound_smtp_user,
            password=settings.outbound_smtp_password,
            timeout=settings.outbound_smtp_timeout_seconds,
            retry_schedule=settings.outbound_smtp_retry_schedule,
            inbound_domain=settings.inbound_domain,
            mail_from=settings.mail_from,
            allow_private_chat_urls=settings.webhooks_allow_private,
            public_url=settings.public_url,
        )

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: bool
    temporary: bool = True
    error: str | None = None


def sign_chat_body(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, raw body)): the same scheme the chat webhook checks on the way in."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def next_delay(attempts_made: int, policy: MailPolicy) -> dt.timedelta | None:
    """The wait before the next try after `attempts_made` attempts; None when retries are exhausted."""
    if attempts_made > len(policy.retry_schedule):
        return None
    base = policy.retry_schedule[attempts_made - 1]
    return dt.timedelta(seconds=base * (1 + random.uniform(-JITTER, JITTER)))


# ---------------------------------------------------------------- SMTP


async def smtp_send(policy: MailPolicy, message: EmailMessage, sender: str, recipients: list[str]) -> Outcome:
    """Hand one message to the mail server; classify what went wrong, never raise."""
    if not policy.host:
        return Outcome(False, True, "ORDERDESK_OUTBOUND_SMTP_HOST is not set: nothing can be sent")
    try:
        refused, _reply = await aiosmtplib.send(
            message,
            sender=sender,
            recipients=recipients,
            hostname=policy.host,
            port=policy.port,
            username=policy.user,
            password=policy.password,
            use_tls=policy.tls == "tls",
            start_tls=True if policy.tls == "starttls" else False,
            timeout=policy.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        temporary = any(400 <= c < 500 for c in codes)
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return Outcome(False, temporary, f"recipient refused: {detail}")
    except aiosmtplib.SMTPAuthenticationError as exc:
        # Our credentials, not the message: retried on the schedule, so fixing them in time saves it.
        return Outcome(False, True, f"SMTP authentication failed: {exc.code} {exc.message}")
    except aiosmtplib.SMTPResponseException as exc:
        return Outcome(False, exc.code < 500, f"mail server answered {exc.code} {exc.message}")
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        return Outcome(False, True, f"mail server unreachable: {type(exc).__name__}: {exc}"[:500])
    if refused:
        detail = "; ".join(f"{address}: {code} {text_}" for address, (code, text_) in refused.items())
        return Outcome(False, all(400 <= code < 500 for code, _ in refused.values()), f"refused {detail}")
    return Outcome(True)


def _one_line(value: str | None) -> str:
    # Header values must not carry line breaks (header injection); fold any whitespace run.
    return " ".join((value or "").split())


def build_reply_email(
    message: Message,
    conversation: Conversation,
    settings: CommsSettings,
    inbound_domain: str,
    look: Branding | None = None,
    public_url: str | None = None,
) -> EmailMessage:
    """The RFC 5322 message of one outbound reply, headers for threading included.

    With the tenant's branding, the plain text gets an HTML alternative in its colours
    (and its logo, where a public URL lets the customer's mail client fetch it)."""
    email = EmailMessage()
    email["From"] = formataddr((_one_line(settings.from_name), settings.from_address))
    recipient = next((r for r in message.recipients if r.get("kind") == "to"), None) or {}
    address = recipient.get("address") or conversation.customer_email
    email["To"] = formataddr((_one_line(recipient.get("name")), address))
    email["Reply-To"] = comms.reply_address(
        settings.inbound_local_part, conversation.reply_token, inbound_domain
    )
    email["Subject"] = _one_line(message.subject)
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = message.provider_message_id
    if message.in_reply_to:
        email["In-Reply-To"] = message.in_reply_to
    if message.references:
        email["References"] = " ".join(message.references)
    if message.is_automated:
        # RFC 3834: other robots must not answer an automatic answer.
        email["Auto-Submitted"] = "auto-replied"
    email.set_content(message.text_body or "")
    if look is not None:
        email.add_alternative(branded_html(message.text_body or "", look, public_url), subtype="html")
    return email


def branded_html(text: str, look: Branding, public_url: str | None) -> str:
    """The reply's text in the tenant's colours: a header bar with its logo or name, then the text.

    The text is escaped (an agent's reply is never markup); inline styles only, which is
    what mail clients keep."""
    logo = look.logo_url(public_url) if public_url else None
    masthead = (
        f'<img src="{html.escape(logo)}" alt="{html.escape(look.name)}" height="40"'
        ' style="display:block;border:0">'
        if logo
        else html.escape(look.name)
    )
    paragraphs = "".join(
        f'<p style="margin:0 0 12px">{html.escape(block).replace(chr(10), "<br>")}</p>'
        for block in text.split("\n\n")
        if block.strip()
    )
    return (
        '<!doctype html><html><body style="margin:0;background:#f4f5f7">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">'
        '<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="max-width:600px;'
        'background:#ffffff;font-family:Arial,Helvetica,sans-serif;color:#1d2430;font-size:15px;line-height:1.5">'
        f'<tr><td style="background:{look.accent_colour};color:{look.on_accent_colour};padding:16px 24px;'
        f'font-size:18px;font-weight:bold">{masthead}</td></tr>'
        f'<tr><td style="padding:24px">{paragraphs}</td></tr>'
        f'<tr><td style="padding:12px 24px;border-top:3px solid {look.accent_colour};'
        'color:#5b6472;font-size:12px">'
        f"{html.escape(look.name)}</td></tr>"
        "</table></td></tr></table></body></html>"
    )


# ---------------------------------------------------------------- chat


async def chat_post(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    payload: dict,
    *,
    allow_private: bool,
    seconds: float = 15.0,
) -> Outcome:
    """POST one chat reply, signed; classify the answer, never raise."""
    try:
        await urls.check_target(url, allow_private=allow_private)
    except urls.UnsafeUrl as exc:
        return Outcome(False, False, f"chat endpoint refused: {exc}")
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        response = await http.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", CHAT_SIGNATURE_HEADER: sign_chat_body(secret, body)},
            timeout=seconds,
        )
    except httpx.HTTPError as exc:
        return Outcome(False, True, f"chat endpoint unreachable: {type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return Outcome(True)
    temporary = response.status_code >= 500 or response.status_code in (408, 425, 429)
    return Outcome(False, temporary, f"chat endpoint answered {response.status_code}: {response.text[:200]}")


# ---------------------------------------------------------------- claiming and recording


_CLAIM_SQL = """
    UPDATE {table} AS t SET next_attempt_at = now() + make_interval(secs => :lease)
    FROM (
        SELECT tenant_id, id FROM {table}
        WHERE delivery_status = 'queued' AND next_attempt_at <= now() {extra}
        ORDER BY next_attempt_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE t.tenant_id = due.tenant_id AND t.id = due.id
    RETURNING t.tenant_id, t.id
"""


async def _claim(
    session: AsyncSession, table: str, extra: str, limit: int, lease: dt.timedelta
) -> list[tuple[UUID, UUID]]:
    # `table` and `extra` are constants of this module, never input.
    rows = await session.execute(
        text(_CLAIM_SQL.format(table=table, extra=extra)),
        {"lease": lease.total_seconds(), "limit": limit},
    )
    return [(row.tenant_id, row.id) for row in rows]


@dataclass(slots=True)
class _Job:
    tenant_id: UUID
    id: UUID
    attempts: int
    kind: str  # "email", "chat", "notice"
    email: EmailMessage | None = None
    sender: str | None = None
    recipients: list[str] | None = None
    chat_url: str | None = None
    chat_secret: str | None = None
    chat_payload: dict | None = None
    setup_error: str | None = None
    # The message itself is unsendable (not the configuration): fail it rather than retry.
    permanent: bool = False


async def _message_jobs(db: Database, scope: Scope, policy: MailPolicy, limit: int) -> list[_Job]:
    jobs: list[_Job] = []
    async with db.transaction(scope) as session:
        # Without a mail server, email stays queued (untouched, attempts not spent) until one is set.
        only = "AND direction = 'out'" + ("" if policy.host else " AND channel = 'chat'")
        claimed = await _claim(session, "messages", only, limit, LEASE)
        for tenant_id, message_id in claimed:
            message = await session.get(Message, (tenant_id, message_id))
            conversation = await session.get(Conversation, (tenant_id, message.conversation_id))
            job = _Job(tenant_id, message_id, message.send_attempts, "email")
            if message.channel is MessageChannel.CHAT:
                job.kind = "chat"
                outbound = await session.get(OutboundSettings, tenant_id)
                thread = await session.scalar(
                    select(ChatThread.external_id).where(
                        ChatThread.tenant_id == tenant_id, ChatThread.conversation_id == conversation.id
                    )
                )
                if outbound is None or not outbound.chat_reply_url or not outbound.chat_webhook_secret:
                    job.setup_error = "the tenant has no chat reply endpoint configured"
                else:
                    job.chat_url, job.chat_secret = outbound.chat_reply_url, outbound.chat_webhook_secret
                    job.chat_payload = {
                        "conversation_id": thread or str(conversation.id),
                        "message_id": message.provider_message_id,
                        "sender": {"name": message.sender_name or message.created_by},
                        "text": message.text_body or "",
                        "sent_at": message.created_at.isoformat(),
                    }
            else:
                settings = await session.get(CommsSettings, tenant_id)
                if settings is None or not settings.from_address or not settings.inbound_local_part:
                    job.setup_error = "the tenant has no from-address or inbound address"
                elif not policy.inbound_domain:
                    job.setup_error = "ORDERDESK_INBOUND_DOMAINS is not set"
                else:
                    try:
                        job.email = build_reply_email(
                            message,
                            conversation,
                            settings,
                            policy.inbound_domain,
                            await branding_in_session(session, tenant_id),
                            policy.public_url,
                        )
                    except (ValueError, TypeError) as exc:
                        job.setup_error, job.permanent = f"the email cannot be built: {exc}"[:500], True
                    job.sender = settings.from_address
                    job.recipients = [
                        r["address"] for r in message.recipients if r.get("address") and r.get("kind") != "cc"
                    ] or [conversation.customer_email]
            jobs.append(job)
    return jobs


def _notice_email(notice: PlatformNotice, policy: MailPolicy) -> tuple[EmailMessage, str]:
    sender = policy.mail_from or f"OrderDesk <noreply@{policy.inbound_domain or 'localhost'}>"
    email = EmailMessage()
    email["From"] = sender
    email["To"] = notice.to_address
    email["Subject"] = _one_line(notice.subject)
    email["Date"] = format_datetime(notice.created_at)
    email["Message-ID"] = notice.provider_message_id
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(notice.text_body)
    return email, parseaddr(sender)[1]


async def _notice_jobs(db: Database, scope: Scope, policy: MailPolicy, limit: int) -> list[_Job]:
    jobs: list[_Job] = []
    if not policy.host:
        return jobs
    async with db.transaction(scope) as session:
        for tenant_id, notice_id in await _claim(session, "platform_notices", "", limit, LEASE):
            notice = await session.get(PlatformNotice, (tenant_id, notice_id))
            email, sender = _notice_email(notice, policy)
            jobs.append(
                _Job(tenant_id, notice_id, notice.send_attempts, "notice", email, sender, [notice.to_address])
            )
    return jobs


async def _attempt(job: _Job, policy: MailPolicy, http: httpx.AsyncClient | None) -> Outcome:
    if job.setup_error:
        return Outcome(False, not job.permanent, job.setup_error)
    if job.kind == "chat":
        if http is None:
            return Outcome(False, True, "no HTTP client in this worker")
        return await chat_post(
            http,
            job.chat_url,
            job.chat_secret,
            job.chat_payload,
            allow_private=policy.allow_private_chat_urls,
        )
    return await smtp_send(policy, job.email, job.sender, job.recipients)


async def _record(db: Database, job: _Job, outcome: Outcome, policy: MailPolicy) -> DeliveryStatus:
    now = dt.datetime.now(dt.UTC)
    attempts = job.attempts + 1
    if outcome.sent:
        status, next_at = DeliveryStatus.SENT, None
    else:
        delay = next_delay(attempts, policy) if outcome.temporary else None
        status = DeliveryStatus.QUEUED if delay is not None else DeliveryStatus.FAILED
        next_at = now + delay if delay is not None else None
    scope = Scope.for_tenants(job.tenant_id)
    async with db.transaction(scope) as session:
        if job.kind == "notice":
            values: dict = {
                "delivery_status": status,
                "send_attempts": PlatformNotice.send_attempts + 1,
                "next_attempt_at": next_at,
                "last_error": (outcome.error or None) and outcome.error[:500],
            }
            if outcome.sent:
                values["sent_at"] = now
            await session.execute(
                update(PlatformNotice)
                .where(PlatformNotice.tenant_id == job.tenant_id, PlatformNotice.id == job.id)
                .values(values)
            )
        else:
            await comms.mark_delivery(
                session, job.tenant_id, job.id, status, error=outcome.error, next_attempt_at=next_at
            )
            if status is DeliveryStatus.FAILED:
                await _reopen_work_for_failure(session, job, outcome.error or "not delivered")
    event = {
        DeliveryStatus.SENT: "outbound_sent",
        DeliveryStatus.QUEUED: "outbound_retry_scheduled",
        DeliveryStatus.FAILED: "outbound_failed",
    }[status]
    logger = log.warning if status is not DeliveryStatus.SENT else log.info
    logger(
        event,
        tenant=str(job.tenant_id),
        kind=job.kind,
        id=str(job.id),
        attempts=attempts,
        error=outcome.error,
    )
    return status


async def _reopen_work_for_failure(session: AsyncSession, job: _Job, error: str) -> None:
    """A reply that could not be delivered puts its conversation back in front of an agent."""
    from orderdesk.orders.models import Order
    from orderdesk.workqueue import services as work

    message = await session.get(Message, (job.tenant_id, job.id))
    conversation = await session.get(Conversation, (job.tenant_id, message.conversation_id))
    order = None
    if conversation.order_id is not None:
        order = await session.get(Order, (job.tenant_id, conversation.order_id))
    await work.open_or_update_conversation_item(
        session,
        tenant_id=job.tenant_id,
        conversation_id=conversation.id,
        cause=f"conversation:{conversation.id}",
        title=f"Reply not delivered: {(message.subject or conversation.subject or 'conversation')[:150]}",
        detail=f"The {message.channel.value} reply of {message.created_by} failed: {error[:300]}. "
        "Check the customer's address or the channel, then reply again.",
        order=order,
        created_by="outbound mail",
        channel=message.channel.value,
    )


async def deliver_due(
    db: Database,
    policy: MailPolicy,
    scope: Scope,
    *,
    http: httpx.AsyncClient | None = None,
    budget_seconds: float = 40.0,
    concurrency: int = 5,
) -> int:
    """Send everything due in `scope` (replies, chat replies, notices); returns how many were attempted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    gate = asyncio.Semaphore(concurrency)
    attempted = 0

    async def one(job: _Job) -> None:
        async with gate:
            outcome = await _attempt(job, policy, http)
            await _record(db, job, outcome, policy)

    while loop.time() < deadline:
        jobs = await _message_jobs(db, scope, policy, BATCH) + await _notice_jobs(db, scope, policy, BATCH)
        if not jobs:
            break
        await asyncio.gather(*(one(job) for job in jobs))
        attempted += len(jobs)
    return attempted
