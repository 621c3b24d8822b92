"""Small helpers shared by the console's page controllers: context, redirects, form values."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from litestar import Request, Response
from litestar.response import Redirect, Template

from orderdesk.accounts.actors import Actor
from orderdesk.accounts.models import StaffRole
from orderdesk.core import money

KIND_LABELS = {
    "order_entry": "Order entry",
    "verification": "Verification",
    "exception": "Exception",
    "customer_message": "Customer message",
    "tracking_follow_up": "Tracking follow-up",
    "return": "Return",
}
OUTCOME_LABELS = {
    "resolved": "Resolved",
    "no_action_needed": "No action needed",
    "escalated": "Escalated",
    "duplicate": "Duplicate",
    "resolved_elsewhere": "Resolved elsewhere",
    "order_cancelled": "Order cancelled",
    "withdrawn": "Withdrawn",
}


def format_money(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return "—"
    try:
        return money.format_minor(amount, currency)
    except (KeyError, ValueError):
        return f"{amount} {currency}"


def duration(seconds: float) -> str:
    """3725 → '1 h 2 min'; under a minute → 'under a minute'."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return "under a minute"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def relative(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "—"
    delta = (when - now).total_seconds()
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(delta)} ago"


def is_lead(actor: Actor) -> bool:
    return actor.staff_role in (StaffRole.LEAD, StaffRole.ADMIN)


def page(name: str, actor: Actor, status_code: int = 200, **context: Any) -> Template:
    """A console template with what every page uses (actor, clock, formatters)."""
    now = dt.datetime.now(dt.UTC)
    return Template(
        template_name=name,
        context={
            "actor": actor,
            "now": now,
            "is_lead": is_lead(actor),
            "money": format_money,
            "relative": lambda when: relative(when, now),
            "duration": duration,
            "kind_label": lambda kind: KIND_LABELS.get(str(kind), str(kind)),
            "outcome_label": lambda outcome: OUTCOME_LABELS.get(str(outcome), str(outcome)),
            **context,
        },
        status_code=status_code,
    )


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def go_to(request: Request, path: str) -> Response:
    """Navigate: a full redirect for plain forms, an HX-Redirect for htmx."""
    if is_htmx(request):
        return Response(content="", status_code=200, headers={"HX-Redirect": path})
    return Redirect(path=path, status_code=303)


def field_id(name: str) -> str:
    """A DOM id for a field's error slot: 'lines[0].sku' → 'err-lines-0-sku'.

    Inputs point at their slot with aria-describedby, so the error is read with the field.
    """
    return "err-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
