"""Decisions asked of the client: an agent parks a work item on a question, the client answers.

Asking parks the item as waiting on the client (its SLA clock pauses) and writes
the question on the order's timeline, in one transaction. Answering (approve or
deny, with a comment) puts the item back in the queue with the verdict in its
detail and on the order's timeline, also in one transaction, so the agent who
picks it up next sees what the client decided.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole, User
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.orders import services as orders
from orderdesk.orders.timeline import append_event
from orderdesk.portal.models import ClientDecision, DecisionVerdict
from orderdesk.workqueue import services as workqueue
from orderdesk.workqueue.models import WorkItem
from orderdesk.workqueue.states import WorkItemStatus

MAX_QUESTION = 2000
MAX_COMMENT = 2000


@dataclass(frozen=True, slots=True)
class DecisionView:
    id: UUID
    work_item_id: UUID
    kind: str
    item_title: str
    item_status: str
    order_id: UUID | None
    order_number: int | None
    question: str
    asked_by_name: str
    asked_at: dt.datetime
    verdict: str | None
    comment: str | None
    decided_by_name: str | None
    decided_at: dt.datetime | None

    @property
    def waiting(self) -> bool:
        return self.decided_at is None and self.item_status == WorkItemStatus.WAITING_CLIENT.value


def _check_answer(verdict: str, comment: str | None) -> tuple[DecisionVerdict, str | None]:
    """Raises ValidationFailed naming every problem of the answer."""
    errors = []
    try:
        chosen = DecisionVerdict(verdict)
    except ValueError:
        chosen = None
        errors.append(FieldError("verdict", "must be approved or denied"))
    comment = (comment or "").strip() or None
    if chosen is DecisionVerdict.DENIED and not comment:
        errors.append(FieldError("comment", "is required when denying: tell the agents what to do instead"))
    if comment and len(comment) > MAX_COMMENT:
        errors.append(FieldError("comment", f"is longer than {MAX_COMMENT} characters"))
    if errors or chosen is None:
        raise ValidationFailed(errors)
    return chosen, comment


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _query():
    asker = aliased(User)
    decider = aliased(User)
    return (
        select(ClientDecision, WorkItem, asker.display_name, decider.display_name)
        .join(
            WorkItem,
            (WorkItem.tenant_id == ClientDecision.tenant_id) & (WorkItem.id == ClientDecision.work_item_id),
        )
        .join(asker, asker.id == ClientDecision.asked_by)
        .outerjoin(decider, decider.id == ClientDecision.decided_by)
    )


def _view(row) -> DecisionView:
    decision, item, asked_by, decided_by = row
    return DecisionView(
        id=decision.id,
        work_item_id=item.id,
        kind=item.kind.value,
        item_title=item.title,
        item_status=item.status.value,
        order_id=decision.order_id,
        order_number=item.order_number,
        question=decision.question,
        asked_by_name=asked_by,
        asked_at=decision.asked_at,
        verdict=decision.verdict.value if decision.verdict else None,
        comment=decision.comment,
        decided_by_name=decided_by,
        decided_at=decision.decided_at,
    )


async def ask_client(
    db: Database, actor: Actor, item_id: UUID, question: str, *, now: dt.datetime | None = None
) -> DecisionView:
    """Put a question to the client and park the held item until they answer.

    Raises PermissionDenied (not staff), NotFound, Conflict (not the holder),
    InvalidTransition (item not claimed), ValidationFailed (empty or long question).
    """
    if actor.kind is not ActorKind.STAFF:
        raise PermissionDenied("Only operations staff ask the client for a decision")
    question = (question or "").strip()
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        item = await workqueue.park_waiting_in_session(session, actor, item_id, "client", now)
        # Checked once the item is known to be theirs (a foreign id is simply not found);
        # a refusal rolls the parking back.
        if not question:
            raise ValidationFailed([FieldError("question", "is required: say what the client should decide")])
        if len(question) > MAX_QUESTION:
            raise ValidationFailed([FieldError("question", f"is longer than {MAX_QUESTION} characters")])
        decision = ClientDecision(
            tenant_id=item.tenant_id,
            id=new_id(),
            work_item_id=item.id,
            order_id=item.order_id,
            question=question,
            asked_by=actor.id,
            asked_at=now,
        )
        session.add(decision)
        if item.order_id is not None:
            order = await orders.lock_order(session, actor, item.order_id)
            append_event(
                session,
                order,
                actor,
                "client_decision_requested",
                f"Client asked to decide: {question}",
                {"decision_id": str(decision.id), "work_item_id": str(item.id)},
            )
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict("The client already has an open question on this item") from exc
        return await _get(session, actor, decision.id)


async def _get(session: AsyncSession, actor: Actor, decision_id: UUID) -> DecisionView:
    row = (
        await session.execute(
            _query().where(ClientDecision.id == decision_id, ClientDecision.tenant_id.in_(actor.tenant_ids))
        )
    ).first()
    if row is None:
        raise NotFound("Decision")
    return _view(row)


async def get_decision(db: Database, actor: Actor, decision_id: UUID) -> DecisionView:
    """One decision of the actor's tenants. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        return await _get(session, actor, decision_id)


async def list_waiting(db: Database, actor: Actor) -> list[DecisionView]:
    """Questions the client has not answered whose items still wait on them, oldest first."""
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            _query()
            .where(
                ClientDecision.tenant_id.in_(actor.tenant_ids),
                ClientDecision.decided_at.is_(None),
                WorkItem.status == WorkItemStatus.WAITING_CLIENT,
            )
            .order_by(ClientDecision.asked_at)
        )
        return [_view(r) for r in rows]


async def list_decided(db: Database, actor: Actor, limit: int = 20) -> list[DecisionView]:
    """The latest answered questions, newest first."""
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            _query()
            .where(ClientDecision.tenant_id.in_(actor.tenant_ids), ClientDecision.decided_at.is_not(None))
            .order_by(ClientDecision.decided_at.desc())
            .limit(limit)
        )
        return [_view(r) for r in rows]


async def list_for_order(db: Database, actor: Actor, order_id: UUID) -> list[DecisionView]:
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            _query()
            .where(ClientDecision.tenant_id.in_(actor.tenant_ids), ClientDecision.order_id == order_id)
            .order_by(ClientDecision.asked_at)
        )
        return [_view(r) for r in rows]


async def list_for_item(db: Database, actor: Actor, item_id: UUID) -> list[DecisionView]:
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            _query()
            .where(ClientDecision.tenant_id.in_(actor.tenant_ids), ClientDecision.work_item_id == item_id)
            .order_by(ClientDecision.asked_at)
        )
        return [_view(r) for r in rows]


async def decide(
    db: Database,
    actor: Actor,
    decision_id: UUID,
    verdict: str,
    comment: str | None,
    *,
    now: dt.datetime | None = None,
) -> DecisionView:
    """The client's answer: the item goes back to the agents' queue with it.

    Raises NotFound, PermissionDenied (not a client admin), ValidationFailed (bad
    verdict; a denial without a comment; a long comment), Conflict (already
    answered, or the agents no longer wait for it).
    """
    if actor.kind is not ActorKind.CLIENT or actor.client_role is not ClientRole.ADMIN:
        raise PermissionDenied("Only the client's administrators can decide")
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        decision = await session.scalar(
            select(ClientDecision)
            .where(ClientDecision.id == decision_id, ClientDecision.tenant_id.in_(actor.tenant_ids))
            .with_for_update()
        )
        if decision is None:
            raise NotFound("Decision")
        chosen, comment = _check_answer(verdict, comment)
        if decision.decided_at is not None:
            raise Conflict(f"This was already decided: {decision.verdict.value}")
        item = await session.scalar(
            select(WorkItem)
            .where(WorkItem.tenant_id == decision.tenant_id, WorkItem.id == decision.work_item_id)
            .with_for_update()
        )
        if item is None or item.status is not WorkItemStatus.WAITING_CLIENT:
            raise Conflict("The agents no longer wait for this decision; nothing was recorded")
        decision.verdict = chosen
        decision.comment = comment
        decision.decided_by = actor.id
        decision.decided_at = now
        item = await workqueue.resume_in_session(session, actor, item.id, now)
        answer = f"Client {chosen.value} ({actor.display_name})" + (f": {comment}" if comment else "")
        item.detail = ((item.detail or "") + "\n\n" + answer).strip()
        if decision.order_id is not None:
            order = await orders.lock_order(session, actor, decision.order_id)
            append_event(
                session,
                order,
                actor,
                "client_decision",
                f"Client {chosen.value}: {decision.question}" + (f" — {comment}" if comment else ""),
                {"decision_id": str(decision.id), "verdict": chosen.value, "work_item_id": str(item.id)},
            )
        await session.flush()
        return await _get(session, actor, decision.id)
