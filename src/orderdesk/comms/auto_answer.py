"""Safe automatic answers: a where-is-my-order message answered from the tenant's template.

The rules (`decide`) are pure and tested case by case. What they never do: answer an
automated message (auto-replies, bounces, bulk: two robots would mail each other
forever), answer twice in a row without a human in between, or act on cancellations
and address changes, which always go to an agent, and never once the order is packed.

The hook runs inside the transaction that stores the inbound message (see
`comms.services.INBOUND_HOOKS`), so the answer is queued with the message or not at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor
from orderdesk.comms import templates
from orderdesk.comms.models import (
    CommsSettings,
    Conversation,
    Direction,
    Intent,
    Message,
    MessageChannel,
)
from orderdesk.comms.outbound_models import EmailTemplate, OutboundSettings
from orderdesk.orders.models import Order
from orderdesk.orders.states import OrderStatus

log = structlog.get_logger("orderdesk.comms.auto_answer")

# Below this, the detector is guessing: an agent reads it first.
MIN_CONFIDENCE = 0.7
# Packed or beyond: the goods are out of the warehouse's hands for a quiet change.
PACKED_OR_LATER = frozenset(
    {
        OrderStatus.PACKED,
        OrderStatus.PARTIALLY_SHIPPED,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.RETURN_REQUESTED,
        OrderStatus.RETURN_RECEIVED,
        OrderStatus.REFUNDED,
        OrderStatus.RETURN_REJECTED,
        OrderStatus.CLOSED,
    }
)
AUTOMATED_REASON = "auto answer: where is my order"
# No second automatic answer in a conversation within this time unless a person wrote in between.
QUIET_PERIOD = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Decision:
    answer: bool
    reason: str


def decide(
    *,
    enabled: bool,
    has_template: bool,
    direction: Direction,
    channel: MessageChannel,
    intent: Intent | None,
    confidence: float | None,
    is_automated: bool,
    order_status: OrderStatus | None,
    answered_recently: bool,
) -> Decision:
    """Whether one inbound message gets an automatic answer, and why (in words for the log).

    `has_template` and `answered_recently` are asked last, and `after_inbound` relies on
    it: it reads them from the database only when every other rule allows an answer.
    """
    if direction is not Direction.INBOUND or channel is MessageChannel.NOTE:
        return Decision(False, "not a customer's message")
    if is_automated:
        return Decision(False, "automated message (auto-reply, bounce or bulk): never answered automatically")
    if intent in (Intent.CANCEL, Intent.CHANGE_ADDRESS):
        packed = order_status in PACKED_OR_LATER
        return Decision(
            False,
            "cancellations and address changes are never handled automatically"
            + (" (the order is already packed)" if packed else ""),
        )
    if not enabled:
        return Decision(False, "the tenant does not allow automatic answers")
    if intent is not Intent.WHERE_IS_MY_ORDER:
        return Decision(False, "only where-is-my-order messages are answered automatically")
    if confidence is None or confidence < MIN_CONFIDENCE:
        return Decision(False, f"intent uncertain (confidence below {MIN_CONFIDENCE})")
    if order_status is None:
        return Decision(False, "the message is not placed on an order")
    if order_status is OrderStatus.CANCELLED:
        return Decision(False, "the order is cancelled: an agent explains")
    if not has_template:
        return Decision(False, "the tenant has chosen no auto-answer template")
    if answered_recently:
        return Decision(False, "this conversation was answered automatically already")
    return Decision(True, "where is my order, answered with the current tracking status")


async def _answered_recently(session: AsyncSession, conversation: Conversation, now: dt.datetime) -> bool:
    """The last outbound message is an automatic answer from within the quiet period."""
    last_out = await session.scalar(
        select(Message)
        .where(
            Message.tenant_id == conversation.tenant_id,
            Message.conversation_id == conversation.id,
            Message.direction == Direction.OUTBOUND,
            Message.channel != MessageChannel.NOTE,
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    return bool(last_out and last_out.is_automated and now - last_out.created_at < QUIET_PERIOD)


async def after_inbound(
    session: AsyncSession, actor: Actor, conversation: Conversation, message: Message, order: Order | None
) -> Message | None:
    """Queue an automatic answer to `message` when the rules allow it; returns the answer or None.

    Runs inside the caller's transaction. A template that fails to render, or a
    tenant not set up to send, leaves the message to an agent (logged), never raises.
    """
    from orderdesk.comms import outbound  # outbound imports the services this hook is called from

    settings = await session.get(CommsSettings, conversation.tenant_id)
    now = dt.datetime.now(dt.UTC)

    def decision_with(has_template: bool, answered_recently: bool) -> Decision:
        return decide(
            enabled=bool(settings and settings.auto_answer_enabled),
            has_template=has_template,
            direction=message.direction,
            channel=message.channel,
            intent=message.intent,
            confidence=message.intent_confidence,
            is_automated=message.is_automated,
            order_status=order.status if order is not None else None,
            answered_recently=answered_recently,
        )

    # The template and the last answer are the rules' last two questions: read them only
    # when every other rule allows an answer (most messages are settled without them).
    extra = None
    decision = decision_with(has_template=True, answered_recently=False)
    if decision.answer:
        extra = await session.get(OutboundSettings, conversation.tenant_id)
        decision = decision_with(
            has_template=bool(extra and extra.auto_answer_template_id),
            answered_recently=await _answered_recently(session, conversation, now),
        )
    log.info(
        "auto_answer_decided",
        tenant=str(conversation.tenant_id),
        conversation=str(conversation.id),
        message=str(message.id),
        answer=decision.answer,
        reason=decision.reason,
    )
    if not decision.answer:
        return None
    template = await session.get(EmailTemplate, (conversation.tenant_id, extra.auto_answer_template_id))
    context = await outbound.template_context(
        session, conversation.tenant_id, order=order, conversation=conversation
    )
    try:
        rendered = templates.render(template.subject, template.body, context)
        savepoint = await session.begin_nested()
        try:
            answer = await outbound.queue_reply_in(
                session,
                actor,
                conversation,
                outbound.Composed(subject=rendered.subject, body=rendered.body),
                automated_reason=AUTOMATED_REASON,
            )
        except Exception:
            await savepoint.rollback()
            raise
        await savepoint.commit()
    except Exception as exc:  # the customer's message must be stored even if the answer cannot be
        log.warning(
            "auto_answer_skipped",
            tenant=str(conversation.tenant_id),
            conversation=str(conversation.id),
            error=str(exc)[:300],
        )
        return None
    return answer
