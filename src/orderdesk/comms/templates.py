"""Tenant email templates: a sandboxed Jinja2 environment over plain data, checked at save time.

Templates are written by tenant staff, so they run in Jinja2's immutable sandbox and
see only plain dicts, lists and strings built here (never ORM rows or services):
there is no object whose internals a template could walk into. Unknown variables
and missing attributes fail loudly (StrictUndefined) instead of mailing a customer
an empty gap. `docs/comms.md` lists the variables; VARIABLES below is the truth.
"""

from __future__ import annotations

import datetime as dt
import operator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.core import money
from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.fulfillment.models import Shipment
from orderdesk.orders.models import Order, OrderLine
from orderdesk.tenants.models import Tenant
from orderdesk.tracking import links

MAX_SOURCE_CHARS = 20_000
# A rendered email longer than this is a runaway template, not a letter.
MAX_OUTPUT_CHARS = 100_000

# The documented top-level variables (docs/comms.md describes their fields).
VARIABLES = (
    "order",
    "customer",
    "shipments",
    "tracking",
    "tracking_link",
    "tracking_page",
    "tenant",
    "agent",
    "conversation",
)

STATUS_LABELS = {
    "captured": "received",
    "awaiting_verification": "being checked",
    "verified": "confirmed",
    "allocated": "confirmed",
    "backordered": "waiting for stock",
    "picking": "being picked",
    "packed": "packed",
    "partially_shipped": "partly shipped",
    "shipped": "shipped",
    "delivered": "delivered",
    "return_requested": "return requested",
    "return_received": "return received",
    "refunded": "refunded",
    "return_rejected": "return refused",
    "closed": "completed",
    "cancelled": "cancelled",
}
TRACKING_LABELS = {
    "shipped": "handed to the carrier",
    "info_received": "announced to the carrier",
    "in_transit": "on its way",
    "out_for_delivery": "out for delivery today",
    "failed_attempt": "a delivery attempt failed",
    "available_for_pickup": "ready for pick-up",
    "delivered": "delivered",
    "exception": "held up at the carrier",
    "returned_to_sender": "on its way back to us",
}


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus a cap on `*` and `**` so `'x' * 10**9` cannot eat the worker."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > 100:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        for value, other in ((left, right), (right, left)):
            if isinstance(value, str | list | tuple) and isinstance(other, int):
                if len(value) * other > MAX_OUTPUT_CHARS:
                    raise SecurityError("repetition too large")
        return operator.mul(left, right)


ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateProblem(ValueError):
    """A template that cannot be saved or rendered; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str


def _describe(exc: Exception) -> str:
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, TemplateError):
        return f"template error: {exc.message or exc}"
    return f"template error: {type(exc).__name__}: {exc}"


def check_source(field: str, source: str) -> list[FieldError]:
    """Syntax and unknown top-level variables; an empty list when the source parses."""
    if len(source) > MAX_SOURCE_CHARS:
        return [FieldError(field, f"at most {MAX_SOURCE_CHARS} characters")]
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [FieldError(field, _describe(exc))]
    unknown = sorted(meta.find_undeclared_variables(tree) - set(VARIABLES))
    if unknown:
        return [
            FieldError(
                field,
                f"undefined variable: {', '.join(unknown)} (available: {', '.join(VARIABLES)})",
            )
        ]
    return []


def render_source(field: str, source: str, context: dict[str, Any]) -> str:
    """Render one template text. Raises TemplateProblem naming the field and the cause."""
    try:
        output = ENV.from_string(source).render(context)
    except Exception as exc:  # every template failure, whatever its class, is the author's to fix
        raise TemplateProblem(f"{field}: {_describe(exc)}") from None
    if len(output) > MAX_OUTPUT_CHARS:
        raise TemplateProblem(f"{field}: renders to more than {MAX_OUTPUT_CHARS} characters")
    return output


def render(subject: str, body: str, context: dict[str, Any]) -> Rendered:
    """Subject (one line, whitespace folded) and body. Raises TemplateProblem."""
    rendered_subject = " ".join(render_source("subject", subject, context).split())
    return Rendered(subject=rendered_subject[:300], body=render_source("body", body, context))


def validate(subject: str, body: str, context: dict[str, Any]) -> None:
    """What saving checks: both parts parse, name only known variables, and render with `context`.

    Raises ValidationFailed listing each problem by field (`subject`, `body`).
    """
    errors = check_source("subject", subject) + check_source("body", body)
    if not subject.strip():
        errors.append(FieldError("subject", "must not be empty"))
    if not errors:
        for field, source in (("subject", subject), ("body", body)):
            try:
                render_source(field, source, context)
            except TemplateProblem as exc:
                errors.append(FieldError(field, str(exc).split(": ", 1)[1]))
    if errors:
        raise ValidationFailed(errors)


# ---------------------------------------------------------------- the variables


def _date(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d") if value else None


def shipment_data(shipment: Shipment) -> dict[str, Any]:
    status = shipment.status.value
    return {
        "number": shipment.number,
        "carrier": shipment.carrier,
        "service": shipment.service,
        "tracking_number": shipment.tracking_number,
        "tracking_url": shipment.tracking_url,
        "status": status,
        "status_label": TRACKING_LABELS.get(status, status.replace("_", " ")),
        "shipped_at": _date(shipment.shipped_at),
        "delivered_at": _date(shipment.delivered_at),
    }


def build_context(
    *,
    tenant: Tenant,
    order: Order | None,
    lines: list[OrderLine],
    shipments: list[Shipment],
    from_name: str | None = None,
    from_address: str | None = None,
    agent_name: str | None = None,
    conversation_subject: str | None = None,
    customer_name: str | None = None,
    customer_email: str | None = None,
) -> dict[str, Any]:
    """The template variables, as plain data only (the sandbox sees nothing else)."""
    shipment_views = [shipment_data(s) for s in shipments]
    latest = shipment_views[-1] if shipment_views else None
    order_data = None
    if order is not None:
        status = order.status.value
        order_data = {
            "number": order.number,
            "reference": f"#{order.number}",
            "external_ref": order.external_ref,
            "status": status,
            "status_label": STATUS_LABELS.get(status, status.replace("_", " ")),
            "placed_on": _date(order.created_at),
            "total": money.format_minor(order.total_minor, order.currency),
            "currency": order.currency,
            "lines": [
                {"sku": line.sku, "description": line.description, "quantity": line.quantity}
                for line in lines
            ],
            "shipping_city": (order.shipping_address or {}).get("city"),
            "shipping_country": (order.shipping_address or {}).get("country"),
        }
    name = customer_name or (order.customer_name if order else None) or ""
    return {
        "order": order_data,
        "customer": {
            "name": name,
            "first_name": name.split(" ")[0] if name else "",
            "email": customer_email or (order.customer_email if order else None),
        },
        "shipments": shipment_views,
        "tracking": {
            "status": latest["status"] if latest else None,
            "status_label": latest["status_label"]
            if latest
            else (order_data["status_label"] if order_data else None),
            "carrier": latest["carrier"] if latest else None,
            "tracking_number": latest["tracking_number"] if latest else None,
            "url": latest["tracking_url"] if latest else None,
        },
        "tracking_link": latest["tracking_url"] if latest else None,
        # The customer's own page for this order (signed link), where a public URL is set.
        "tracking_page": links.customer_link(order.tenant_id, order.id) if order is not None else None,
        "tenant": {
            "name": tenant.name,
            "from_name": from_name or tenant.name,
            "from_address": from_address,
        },
        "agent": {"name": agent_name or tenant.name},
        "conversation": {"subject": conversation_subject},
    }


async def order_context(
    session: AsyncSession,
    tenant: Tenant,
    order: Order | None,
    *,
    from_name: str | None = None,
    from_address: str | None = None,
    agent_name: str | None = None,
    conversation_subject: str | None = None,
    customer_name: str | None = None,
    customer_email: str | None = None,
) -> dict[str, Any]:
    """Load an order's lines and shipments (scoped to its tenant) and build the variables."""
    lines: list[OrderLine] = []
    shipments: list[Shipment] = []
    if order is not None:
        lines = list(
            (
                await session.scalars(
                    select(OrderLine)
                    .where(OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id)
                    .order_by(OrderLine.line_no)
                )
            ).all()
        )
        shipments = list(
            (
                await session.scalars(
                    select(Shipment)
                    .where(Shipment.tenant_id == order.tenant_id, Shipment.order_id == order.id)
                    .order_by(Shipment.number)
                )
            ).all()
        )
    return build_context(
        tenant=tenant,
        order=order,
        lines=lines,
        shipments=shipments,
        from_name=from_name,
        from_address=from_address,
        agent_name=agent_name,
        conversation_subject=conversation_subject,
        customer_name=customer_name,
        customer_email=customer_email,
    )


def sample_context(tenant: Tenant, *, from_name: str | None = None, from_address: str | None = None) -> dict:
    """Stand-in variables for checking a template when the tenant has no order yet."""
    context = build_context(
        tenant=tenant, order=None, lines=[], shipments=[], from_name=from_name, from_address=from_address
    )
    context["order"] = {
        "number": 1042,
        "reference": "#1042",
        "external_ref": "SHOP-1042",
        "status": "shipped",
        "status_label": "shipped",
        "placed_on": "2026-01-15",
        "total": "59.90 EUR",
        "currency": "EUR",
        "lines": [{"sku": "TENT-2P", "description": "Two-person tent", "quantity": 1}],
        "shipping_city": "Berlin",
        "shipping_country": "DE",
    }
    context["customer"] = {"name": "Kim Example", "first_name": "Kim", "email": "kim@example.com"}
    shipment = {
        "number": 1,
        "carrier": "DHL",
        "service": None,
        "tracking_number": "00340434161094042557",
        "tracking_url": "https://tracking.example.com/00340434161094042557",
        "status": "in_transit",
        "status_label": TRACKING_LABELS["in_transit"],
        "shipped_at": "2026-01-16",
        "delivered_at": None,
    }
    context["shipments"] = [shipment]
    context["tracking"] = {
        "status": "in_transit",
        "status_label": shipment["status_label"],
        "carrier": "DHL",
        "tracking_number": shipment["tracking_number"],
        "url": shipment["tracking_url"],
    }
    context["tracking_link"] = shipment["tracking_url"]
    context["conversation"] = {"subject": "Where is my order?"}
    return context
