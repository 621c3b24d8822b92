"""Outbound communication: templates, macros, outbound settings and agents' replies.

A reply is stored as an outbound message (`delivery_status = queued`) in the same
transaction as the order's timeline entry; the same transaction NOTIFYs the worker,
and PostgreSQL delivers that notification only on commit, so the worker never looks
for a reply that is not there yet. The worker sends it (comms/sending.py); a sweep
picks up whatever a lost notification or job left queued.

Every public function takes the acting `Actor` and raises domain errors: NotFound
(also for another tenant's objects), PermissionDenied, ValidationFailed, Conflict.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from email.utils import make_msgid
from typing import Any
from uuid import UUID

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.comms import services as comms
from orderdesk.comms import templates
from orderdesk.comms.models import (
    CommsSettings,
    Conversation,
    DeliveryStatus,
    Direction,
    Message,
    MessageChannel,
    Placement,
)
from orderdesk.comms.outbound_models import AgentMacro, EmailTemplate, OutboundSettings
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.integrations import urls
from orderdesk.orders.models import Order
from orderdesk.orders.timeline import append_event
from orderdesk.tenants.models import Tenant
from orderdesk.workqueue.models import ACTIVE_SQL, WorkItem
from orderdesk.workqueue.states import AGENT_OUTCOMES, WorkItemKind, WorkOutcome

# The worker LISTENs here; NOTIFY inside a transaction is delivered only on its commit.
NOTIFY_CHANNEL = "orderdesk_comms_outbound"
TAG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_REPLY_CHARS = 50_000
MAX_REFERENCES = 20


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- who may do what


def _require_editor(actor: Actor, tenant_id: UUID) -> None:
    """Operations staff, the tenant's client admins and its API keys manage templates and macros."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    if actor.kind is ActorKind.CLIENT and actor.client_role is not ClientRole.ADMIN:
        raise PermissionDenied("Only the tenant's administrators change templates and macros")


def _require_agent(actor: Actor) -> None:
    if not (actor.is_staff or actor.kind is ActorKind.SYSTEM):
        raise PermissionDenied("Only operations staff reply to customers")


async def notify_worker(session: AsyncSession) -> None:
    """Wake the sending worker once this transaction commits (a rollback sends nothing)."""
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


# ---------------------------------------------------------------- template variables


async def _tenant(session: AsyncSession, tenant_id: UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    return tenant


async def _order_in(session: AsyncSession, tenant_id: UUID, order_id: UUID) -> Order:
    order = await session.scalar(select(Order).where(Order.tenant_id == tenant_id, Order.id == order_id))
    if order is None:
        raise NotFound("Order")
    return order


async def template_context(
    session: AsyncSession,
    tenant_id: UUID,
    *,
    order: Order | None = None,
    conversation: Conversation | None = None,
    agent_name: str | None = None,
    sample_if_no_order: bool = False,
) -> dict[str, Any]:
    tenant = await _tenant(session, tenant_id)
    settings = await session.get(CommsSettings, tenant_id)
    from_name = settings.from_name if settings else None
    from_address = settings.from_address if settings else None
    if order is None and sample_if_no_order:
        # Check against the tenant's newest real order; a tenant without orders gets the sample.
        order = await session.scalar(
            select(Order).where(Order.tenant_id == tenant_id).order_by(Order.created_at.desc()).limit(1)
        )
        if order is None:
            return templates.sample_context(tenant, from_name=from_name, from_address=from_address)
    return await templates.order_context(
        session,
        tenant,
        order,
        from_name=from_name,
        from_address=from_address,
        agent_name=agent_name,
        conversation_subject=conversation.subject if conversation else None,
        customer_name=conversation.customer_name if conversation else None,
        customer_email=conversation.customer_email if conversation else None,
    )


# ---------------------------------------------------------------- templates


@dataclass(slots=True)
class TemplateFields:
    name: str | None = None
    subject: str | None = None
    body: str | None = None


def _check_name(errors: list[FieldError], name: str | None, *, required: bool) -> str | None:
    if name is None:
        if required:
            errors.append(FieldError("name", "is required"))
        return None
    name = " ".join(name.split())
    if not name or len(name) > 100:
        errors.append(FieldError("name", "must be 1-100 characters"))
    return name


async def _flush_unique(session: AsyncSession, what: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        if "uq_" in str(exc.orig):
            raise ValidationFailed([FieldError("name", f"another {what} already has this name")]) from None
        raise


async def create_template(
    db: Database, actor: Actor, tenant_id: UUID, fields: TemplateFields
) -> EmailTemplate:
    """A new template of the tenant, checked against its newest order (or a sample one).

    Raises NotFound (tenant out of reach), PermissionDenied (client viewer),
    ValidationFailed (syntax error, unknown variable, a missing attribute, name taken).
    """
    _require_editor(actor, tenant_id)
    errors: list[FieldError] = []
    name = _check_name(errors, fields.name, required=True)
    if fields.subject is None:
        errors.append(FieldError("subject", "is required"))
    if fields.body is None:
        errors.append(FieldError("body", "is required"))
    if errors:
        raise ValidationFailed(errors)
    async with db.transaction(actor.scope) as session:
        context = await template_context(session, tenant_id, sample_if_no_order=True)
        templates.validate(fields.subject, fields.body, context)
        now = utcnow()
        row = EmailTemplate(
            tenant_id=tenant_id,
            id=new_id(),
            name=name,
            subject=fields.subject,
            body=fields.body,
            created_by=actor.display_name[:200],
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await _flush_unique(session, "template")
        return row


async def _find_template(session: AsyncSession, actor: Actor, template_id: UUID, *, lock: bool = False):
    query = select(EmailTemplate).where(
        EmailTemplate.id == template_id, EmailTemplate.tenant_id.in_(actor.tenant_ids)
    )
    if lock:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound("Template")
    return row


async def get_template(db: Database, actor: Actor, template_id: UUID) -> EmailTemplate:
    """Raises NotFound (missing or another tenant's)."""
    async with db.transaction(actor.scope) as session:
        return await _find_template(session, actor, template_id)


async def list_templates(db: Database, actor: Actor, tenant_id: UUID) -> list[EmailTemplate]:
    """The tenant's templates by name. Raises NotFound (tenant out of reach)."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(EmailTemplate).where(EmailTemplate.tenant_id == tenant_id).order_by(EmailTemplate.name)
        )
        return list(rows.all())


async def update_template(
    db: Database, actor: Actor, template_id: UUID, fields: TemplateFields
) -> EmailTemplate:
    """Change name, subject or body; the result is checked like a new template.

    Raises NotFound, PermissionDenied, ValidationFailed.
    """
    async with db.transaction(actor.scope) as session:
        row = await _find_template(session, actor, template_id, lock=True)
        _require_editor(actor, row.tenant_id)
        errors: list[FieldError] = []
        name = _check_name(errors, fields.name, required=False)
        if errors:
            raise ValidationFailed(errors)
        subject = fields.subject if fields.subject is not None else row.subject
        body = fields.body if fields.body is not None else row.body
        context = await template_context(session, row.tenant_id, sample_if_no_order=True)
        templates.validate(subject, body, context)
        if name is not None:
            row.name = name
        row.subject, row.body, row.updated_at = subject, body, utcnow()
        await _flush_unique(session, "template")
        return row


async def delete_template(db: Database, actor: Actor, template_id: UUID) -> None:
    """Remove a template (auto answers using it stop). Raises NotFound, PermissionDenied."""
    async with db.transaction(actor.scope) as session:
        row = await _find_template(session, actor, template_id, lock=True)
        _require_editor(actor, row.tenant_id)
        await session.execute(
            update(OutboundSettings)
            .where(
                OutboundSettings.tenant_id == row.tenant_id,
                OutboundSettings.auto_answer_template_id == row.id,
            )
            .values(auto_answer_template_id=None)
        )
        await session.delete(row)


@dataclass(frozen=True, slots=True)
class Preview:
    subject: str
    body: str
    order_id: UUID | None
    order_number: int | None


async def preview_template(
    db: Database, actor: Actor, template_id: UUID, order_id: UUID | None = None
) -> Preview:
    """Render a template with a real order of its tenant (the given one, else the newest).

    Raises NotFound (template or order missing or another tenant's), ValidationFailed
    (the template fails with this order, e.g. it has no shipment the text relies on).
    """
    async with db.transaction(actor.scope) as session:
        row = await _find_template(session, actor, template_id)
        order = await _order_in(session, row.tenant_id, order_id) if order_id else None
        context = await template_context(
            session, row.tenant_id, order=order, sample_if_no_order=order is None
        )
        try:
            rendered = templates.render(row.subject, row.body, context)
        except templates.TemplateProblem as exc:
            field, message = str(exc).split(": ", 1)
            raise ValidationFailed([FieldError(field, message)], "The template does not render") from None
        number = context["order"]["number"] if context.get("order") else None
        return Preview(rendered.subject, rendered.body, order.id if order else None, number)


# ---------------------------------------------------------------- macros


@dataclass(slots=True)
class MacroFields:
    name: str | None = None
    insert_text: str | None = None
    set_outcome: str | None = None
    add_tag: str | None = None


def _macro_errors(
    fields: MacroFields, context: dict
) -> tuple[list[FieldError], WorkOutcome | None, str | None]:
    errors: list[FieldError] = []
    outcome = None
    if fields.set_outcome:
        try:
            outcome = WorkOutcome(fields.set_outcome)
        except ValueError:
            outcome = None
        if outcome not in AGENT_OUTCOMES:
            errors.append(
                FieldError("set_outcome", f"must be one of: {', '.join(o.value for o in AGENT_OUTCOMES)}")
            )
    tag = None
    if fields.add_tag:
        tag = fields.add_tag.strip().lower()
        if not TAG.match(tag):
            errors.append(FieldError("add_tag", "1-40 lower-case letters, digits, dashes or underscores"))
    if fields.insert_text:
        problems = templates.check_source("insert_text", fields.insert_text)
        if not problems:
            try:
                templates.render_source("insert_text", fields.insert_text, context)
            except templates.TemplateProblem as exc:
                problems = [FieldError("insert_text", str(exc).split(": ", 1)[1])]
        errors += problems
    return errors, outcome, tag


async def create_macro(db: Database, actor: Actor, tenant_id: UUID, fields: MacroFields) -> AgentMacro:
    """A new macro (at least one of text, outcome, tag).

    Raises NotFound, PermissionDenied, ValidationFailed (bad outcome, tag or text, name taken).
    """
    _require_editor(actor, tenant_id)
    async with db.transaction(actor.scope) as session:
        context = await template_context(session, tenant_id, sample_if_no_order=True)
        errors, outcome, tag = _macro_errors(fields, context)
        name = _check_name(errors, fields.name, required=True)
        if not (fields.insert_text or outcome or tag) and not errors:
            errors.append(FieldError("insert_text", "a macro needs text, an outcome or a tag"))
        if errors:
            raise ValidationFailed(errors)
        now = utcnow()
        row = AgentMacro(
            tenant_id=tenant_id,
            id=new_id(),
            name=name,
            insert_text=fields.insert_text or None,
            set_outcome=outcome,
            add_tag=tag,
            created_by=actor.display_name[:200],
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await _flush_unique(session, "macro")
        return row


async def _find_macro(session: AsyncSession, actor: Actor, macro_id: UUID) -> AgentMacro:
    row = await session.scalar(
        select(AgentMacro).where(AgentMacro.id == macro_id, AgentMacro.tenant_id.in_(actor.tenant_ids))
    )
    if row is None:
        raise NotFound("Macro")
    return row


async def get_macro(db: Database, actor: Actor, macro_id: UUID) -> AgentMacro:
    """Raises NotFound (missing or another tenant's)."""
    async with db.transaction(actor.scope) as session:
        return await _find_macro(session, actor, macro_id)


async def list_macros(db: Database, actor: Actor, tenant_id: UUID) -> list[AgentMacro]:
    """The tenant's macros by name. Raises NotFound (tenant out of reach)."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(AgentMacro).where(AgentMacro.tenant_id == tenant_id).order_by(AgentMacro.name)
        )
        return list(rows.all())


async def update_macro(db: Database, actor: Actor, macro_id: UUID, fields: MacroFields) -> AgentMacro:
    """Replace a macro's parts (empty strings clear them).

    Raises NotFound, PermissionDenied, ValidationFailed.
    """
    async with db.transaction(actor.scope) as session:
        row = await _find_macro(session, actor, macro_id)
        _require_editor(actor, row.tenant_id)
        merged = MacroFields(
            name=fields.name,
            insert_text=row.insert_text if fields.insert_text is None else fields.insert_text,
            set_outcome=(row.set_outcome.value if row.set_outcome else None)
            if fields.set_outcome is None
            else fields.set_outcome,
            add_tag=row.add_tag if fields.add_tag is None else fields.add_tag,
        )
        context = await template_context(session, row.tenant_id, sample_if_no_order=True)
        errors, outcome, tag = _macro_errors(merged, context)
        name = _check_name(errors, fields.name, required=False)
        if not (merged.insert_text or outcome or tag) and not errors:
            errors.append(FieldError("insert_text", "a macro needs text, an outcome or a tag"))
        if errors:
            raise ValidationFailed(errors)
        if name is not None:
            row.name = name
        row.insert_text, row.set_outcome, row.add_tag = merged.insert_text or None, outcome, tag
        row.updated_at = utcnow()
        await _flush_unique(session, "macro")
        return row


async def delete_macro(db: Database, actor: Actor, macro_id: UUID) -> None:
    """Raises NotFound, PermissionDenied."""
    async with db.transaction(actor.scope) as session:
        row = await _find_macro(session, actor, macro_id)
        _require_editor(actor, row.tenant_id)
        await session.delete(row)


async def macro_text_for(db: Database, actor: Actor, conversation_id: UUID, macro_id: UUID) -> str:
    """The macro's text rendered for one conversation, for the reply box to insert.

    Raises NotFound (conversation or macro missing or another tenant's, or of two
    different tenants), ValidationFailed (the text does not render for this order).
    """
    _require_agent(actor)
    async with db.transaction(actor.scope) as session:
        conversation = await _find_conversation(session, actor, conversation_id)
        macro = await _find_macro(session, actor, macro_id)
        if macro.tenant_id != conversation.tenant_id:
            raise NotFound("Macro")
        if not macro.insert_text:
            return ""
        order = (
            await _order_in(session, conversation.tenant_id, conversation.order_id)
            if conversation.order_id
            else None
        )
        context = await template_context(
            session,
            conversation.tenant_id,
            order=order,
            conversation=conversation,
            agent_name=actor.display_name,
        )
        return _render_or_refuse("insert_text", macro.insert_text, context)


def _render_or_refuse(field: str, source: str, context: dict) -> str:
    try:
        return templates.render_source(field, source, context)
    except templates.TemplateProblem as exc:
        raise ValidationFailed(
            [FieldError(field, str(exc).split(": ", 1)[1])], "The text does not render"
        ) from None


# ---------------------------------------------------------------- outbound settings


@dataclass(slots=True)
class OutboundSettingsFields:
    auto_answer_template_id: UUID | None = None
    clear_auto_answer_template: bool = False
    chat_reply_url: str | None = None
    rotate_chat_secret: bool = False


async def outbound_settings_in(session: AsyncSession, tenant_id: UUID) -> OutboundSettings | None:
    return await session.get(OutboundSettings, tenant_id)


async def configure_outbound(
    db: Database,
    actor: Actor,
    tenant_id: UUID,
    fields: OutboundSettingsFields,
    *,
    allow_private: bool = False,
) -> tuple[OutboundSettings, str | None]:
    """Set the auto-answer template and the chat channel; returns the settings and a new chat secret.

    Raises NotFound (tenant or template out of reach), PermissionDenied,
    ValidationFailed (chat URL not https or not public).
    """
    _require_editor(actor, tenant_id)
    errors: list[FieldError] = []
    url = None
    if fields.chat_reply_url:
        try:
            url = urls.check_syntax(fields.chat_reply_url, allow_private=allow_private)
        except urls.UnsafeUrl as exc:
            errors.append(FieldError("chat_reply_url", str(exc)))
    if errors:
        raise ValidationFailed(errors)
    secret = None
    async with db.transaction(actor.scope) as session:
        row = await session.get(OutboundSettings, tenant_id, with_for_update=True)
        if row is None:
            row = OutboundSettings(tenant_id=tenant_id)
            session.add(row)
        if fields.auto_answer_template_id is not None:
            template = await _find_template(session, actor, fields.auto_answer_template_id)
            if template.tenant_id != tenant_id:
                raise NotFound("Template")
            row.auto_answer_template_id = template.id
        elif fields.clear_auto_answer_template:
            row.auto_answer_template_id = None
        if fields.chat_reply_url is not None:
            row.chat_reply_url = url
        if fields.rotate_chat_secret or (row.chat_webhook_secret is None and url):
            secret = "odchat_" + secrets.token_urlsafe(32)
            row.chat_webhook_secret = secret
        row.updated_at = utcnow()
        await session.flush()
        return row, secret


# ---------------------------------------------------------------- replies


@dataclass(slots=True)
class ReplyRequest:
    """What an agent sends: free text, a template, or a macro (whose text fills an empty box)."""

    text: str | None = None
    template_id: UUID | None = None
    macro_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class ReplyResult:
    message: Message
    work_item_id: UUID | None
    outcome_set: WorkOutcome | None
    tag_added: str | None


async def _find_conversation(session: AsyncSession, actor: Actor, conversation_id: UUID) -> Conversation:
    conversation = await session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.tenant_id.in_(actor.tenant_ids))
        .with_for_update()
    )
    if conversation is None:
        raise NotFound("Conversation")
    return conversation


async def _last_inbound(session: AsyncSession, conversation: Conversation) -> Message | None:
    return await session.scalar(
        select(Message)
        .where(
            Message.tenant_id == conversation.tenant_id,
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND,
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )


def message_id_for(domain: str) -> str:
    return make_msgid(idstring="od", domain=domain)


def _reply_subject(conversation: Conversation) -> str:
    subject = (conversation.subject or "Your message").strip()
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


@dataclass(frozen=True, slots=True)
class Composed:
    subject: str
    body: str


async def queue_reply_in(
    session: AsyncSession,
    actor: Actor,
    conversation: Conversation,
    composed: Composed,
    *,
    inbound_domain: str | None = None,
    require_inbound_domain: bool = False,
    automated_reason: str | None = None,
) -> Message:
    """Store an outbound reply (queued) with its timeline entry, inside the caller's transaction.

    Email replies carry our Message-ID (in the from-address's domain) and
    In-Reply-To/References of the customer's last message; the worker adds the
    tokenised Reply-To. Chat replies go to the tenant's chat endpoint.
    Raises ValidationFailed (no customer address, tenant without a from-address or
    inbound address, no inbound domain configured, chat channel not configured).
    """
    settings = await session.get(CommsSettings, conversation.tenant_id)
    errors: list[FieldError] = []
    # Chat-platform conversations are answered there; every other channel by email.
    is_chat = conversation.channel is MessageChannel.CHAT
    if is_chat:
        outbound = await session.get(OutboundSettings, conversation.tenant_id)
        if outbound is None or not outbound.chat_reply_url or not outbound.chat_webhook_secret:
            errors.append(FieldError("channel", "the tenant has no chat reply endpoint configured"))
        channel = MessageChannel.CHAT
        recipients = [
            {"kind": "to", "address": conversation.customer_email, "name": conversation.customer_name}
        ]
        provider_id = f"od-chat-{new_id()}"
    else:
        channel = MessageChannel.EMAIL
        if not conversation.customer_email:
            errors.append(FieldError("conversation", "the customer has no email address to reply to"))
        if settings is None or not settings.from_address:
            errors.append(
                FieldError("from_address", "the tenant has no from-address in its communication settings")
            )
        if settings is None or not settings.inbound_local_part:
            errors.append(FieldError("inbound_local_part", "the tenant has no inbound address for answers"))
        if require_inbound_domain and not inbound_domain:
            errors.append(FieldError("inbound_domain", "ORDERDESK_INBOUND_DOMAINS is not set"))
        recipients = [
            {"kind": "to", "address": conversation.customer_email, "name": conversation.customer_name}
        ]
        # Our Message-ID ends in the sender's domain; the Reply-To (built when sending) in the inbound one.
        sender_domain = settings.from_address.rpartition("@")[2] if settings and settings.from_address else ""
        provider_id = message_id_for(sender_domain or inbound_domain or "orderdesk.invalid")
    if not composed.body.strip():
        errors.append(FieldError("text", "the reply is empty"))
    if len(composed.body) > MAX_REPLY_CHARS:
        errors.append(FieldError("text", f"at most {MAX_REPLY_CHARS} characters"))
    if errors:
        raise ValidationFailed(errors, "The reply cannot be sent")
    last = await _last_inbound(session, conversation)
    in_reply_to = None
    references: list[str] = []
    if channel is MessageChannel.EMAIL and last is not None and last.provider_message_id:
        in_reply_to = last.provider_message_id
        references = [*(last.references or []), last.provider_message_id][-MAX_REFERENCES:]
    draft = comms.MessageDraft(
        direction=Direction.OUTBOUND,
        channel=channel,
        created_by=actor.display_name,
        sender_address=settings.from_address if settings else None,
        sender_name=(settings.from_name if settings else None),
        recipients=recipients,
        subject=composed.subject if channel is MessageChannel.EMAIL else None,
        text_body=composed.body,
        summary=composed.body[:500],
        provider_message_id=provider_id,
        in_reply_to=in_reply_to,
        references=references,
        placement=Placement.OUTBOUND,
        placement_note=f"reply by {actor.display_name}"[:500],
        is_automated=automated_reason is not None,
        automated_reason=automated_reason,
        delivery_status=DeliveryStatus.QUEUED,
    )
    result = await comms.append_message_in(session, actor, conversation, draft)
    await notify_worker(session)
    return result.message


async def _add_tag(session: AsyncSession, actor: Actor, conversation: Conversation, tag: str) -> bool:
    if conversation.order_id is None:
        raise ValidationFailed([FieldError("macro", "this conversation has no order to tag")])
    order = await session.scalar(
        select(Order)
        .where(Order.tenant_id == conversation.tenant_id, Order.id == conversation.order_id)
        .with_for_update()
    )
    if order is None or tag in (order.tags or []):
        return False
    if len(order.tags or []) >= 20:
        raise ValidationFailed([FieldError("macro", "the order has 20 tags already")])
    order.tags = [*(order.tags or []), tag]
    append_event(session, order, actor, "tag_added", f"Tag added: {tag}", {"tags": {"added": tag}})
    return True


async def _conversation_item(session: AsyncSession, conversation: Conversation) -> WorkItem | None:
    return await session.scalar(
        select(WorkItem)
        .where(
            WorkItem.tenant_id == conversation.tenant_id,
            WorkItem.conversation_id == conversation.id,
            WorkItem.kind == WorkItemKind.CUSTOMER_MESSAGE,
            text(f"work_items.{ACTIVE_SQL}"),
        )
        .order_by(WorkItem.created_at)
        .limit(1)
    )


async def send_reply(
    db: Database,
    actor: Actor,
    conversation_id: UUID,
    request: ReplyRequest,
    *,
    inbound_domain: str | None,
) -> ReplyResult:
    """Queue an agent's reply to a conversation; the worker sends it.

    The reply is free text, else the template rendered for the conversation's order,
    else the macro's text. A macro also tags the order and, after the reply is
    stored, finishes the conversation's work item with its outcome (the agent must
    hold the item). Raises NotFound (conversation, template or macro missing or
    another tenant's), PermissionDenied (not staff), Conflict (the item is held by
    someone else), ValidationFailed (empty reply, template fails for this order,
    tenant not set up to send).
    """
    from orderdesk.workqueue import services as work

    _require_agent(actor)
    async with db.transaction(actor.scope) as session:
        conversation = await _find_conversation(session, actor, conversation_id)
        tenant_id = conversation.tenant_id
        order = await _order_in(session, tenant_id, conversation.order_id) if conversation.order_id else None
        context = await template_context(
            session, tenant_id, order=order, conversation=conversation, agent_name=actor.display_name
        )
        macro = None
        if request.macro_id is not None:
            macro = await _find_macro(session, actor, request.macro_id)
            if macro.tenant_id != tenant_id:
                raise NotFound("Macro")
        subject = _reply_subject(conversation)
        body = (request.text or "").strip()
        if request.template_id is not None:
            template = await _find_template(session, actor, request.template_id)
            if template.tenant_id != tenant_id:
                raise NotFound("Template")
            try:
                rendered = templates.render(template.subject, template.body, context)
            except templates.TemplateProblem as exc:
                field, message = str(exc).split(": ", 1)
                raise ValidationFailed([FieldError(field, message)], "The template does not render") from None
            subject = rendered.subject or subject
            body = body or rendered.body
        if not body and macro is not None and macro.insert_text:
            body = _render_or_refuse("insert_text", macro.insert_text, context)
        item = await _conversation_item(session, conversation)
        if macro is not None and macro.set_outcome is not None:
            if item is None:
                raise ValidationFailed([FieldError("macro", "this conversation has no open work item")])
            if item.claimed_by != actor.id:
                raise Conflict("Claim the conversation's work item before a macro sets its outcome")
        message = await queue_reply_in(
            session,
            actor,
            conversation,
            Composed(subject=subject, body=body),
            inbound_domain=inbound_domain,
            require_inbound_domain=True,
        )
        tag_added = None
        if (
            macro is not None
            and macro.add_tag
            and await _add_tag(session, actor, conversation, macro.add_tag)
        ):
            tag_added = macro.add_tag
    outcome = None
    if macro is not None and macro.set_outcome is not None and item is not None:
        await work.complete_work_item(
            db, actor, item.id, macro.set_outcome, note=f"macro: {macro.name}"[:500]
        )
        outcome = macro.set_outcome
    return ReplyResult(
        message=message, work_item_id=item.id if item else None, outcome_set=outcome, tag_added=tag_added
    )


@dataclass(frozen=True, slots=True)
class ReplyDefaults:
    # The conversation's work item's suggested action, as the inbound side wrote it.
    suggestion: str | None
    # The tenant's where-is-my-order template, when that is what the customer asked.
    template_id: UUID | None


async def reply_defaults(db: Database, actor: Actor, conversation_id: UUID) -> ReplyDefaults:
    """What the reply box proposes. Raises NotFound (conversation missing or another tenant's)."""
    from orderdesk.comms.models import Intent

    _require_agent(actor)
    async with db.transaction(actor.scope) as session:
        conversation = await session.scalar(
            select(Conversation).where(
                Conversation.id == conversation_id, Conversation.tenant_id.in_(actor.tenant_ids)
            )
        )
        if conversation is None:
            raise NotFound("Conversation")
        item = await _conversation_item(session, conversation)
        last = await _last_inbound(session, conversation)
        settings = await session.get(OutboundSettings, conversation.tenant_id)
        template_id = None
        if last is not None and last.intent is Intent.WHERE_IS_MY_ORDER and settings is not None:
            template_id = settings.auto_answer_template_id
        return ReplyDefaults(suggestion=item.detail if item else None, template_id=template_id)
