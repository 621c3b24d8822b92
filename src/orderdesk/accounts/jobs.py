"""Housekeeping for sign-in: expired sessions and old failure records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_

from orderdesk.accounts.models import SignInFailure, WebSession
from orderdesk.accounts.services import SESSION_IDLE_TIMEOUT, utcnow
from orderdesk.core.db import Database
from orderdesk.core.tenancy import Scope

# Longest throttling window is an hour; keep a margin so that limits never undercount.
FAILURE_RETENTION = dt.timedelta(hours=2)


async def purge_expired_sign_in_state(db: Database, now: dt.datetime | None = None) -> tuple[int, int]:
    """Delete sessions past their limits and failures past retention; returns both counts."""
    now = now or utcnow()
    async with db.transaction(Scope()) as session:
        sessions = await session.execute(
            delete(WebSession).where(
                or_(
                    WebSession.expires_at <= now,
                    WebSession.last_seen_at <= now - SESSION_IDLE_TIMEOUT,
                )
            )
        )
        failures = await session.execute(
            delete(SignInFailure).where(SignInFailure.failed_at <= now - FAILURE_RETENTION)
        )
    return sessions.rowcount, failures.rowcount


async def purge_sign_in_state_job(ctx: dict[str, Any]) -> dict[str, int]:
    sessions, failures = await purge_expired_sign_in_state(ctx["db"])
    return {"sessions": sessions, "failures": failures}
