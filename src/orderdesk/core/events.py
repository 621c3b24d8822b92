"""Domain events raised inside a transaction and handled before it commits.

A service records what happened (`record(session, event)`); when the unit of work
ends, `Database.transaction` hands each recorded event to the handlers that
subscribed to its type, in the same transaction. So a side effect that must not
be lost (an outbox row, a work item, a stock reservation) commits or rolls back
together with the change that caused it, and the feature that changes orders
does not need to know which other features care.

Handlers may record further events; they are handled in the same pass, up to a
fixed depth so that a cycle fails loudly instead of looping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

Handler = Callable[[AsyncSession, Any], Awaitable[None]]

_PENDING_KEY = "orderdesk.pending_events"
MAX_ROUNDS = 10

_handlers: dict[type, list[Handler]] = defaultdict(list)


def subscribe(event_type: type, handler: Handler) -> None:
    """Run `handler(session, event)` for every recorded event of `event_type` (once per handler)."""
    if handler not in _handlers[event_type]:
        _handlers[event_type].append(handler)


def unsubscribe_all() -> None:
    _handlers.clear()


def record(session: AsyncSession, event: Any) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(event)


async def dispatch(session: AsyncSession) -> None:
    """Hand every recorded event to its handlers; called just before commit."""
    for _ in range(MAX_ROUNDS):
        pending = session.info.pop(_PENDING_KEY, [])
        if not pending:
            return
        for event in pending:
            for handler in list(_handlers.get(type(event), ())):
                await handler(session, event)
    raise RuntimeError(f"domain events still pending after {MAX_ROUNDS} rounds: a handler cycle?")
