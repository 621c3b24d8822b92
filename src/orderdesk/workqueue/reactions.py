"""Which order events open work and which settle it. Pure: a table read by `handlers.py`.

Each timeline event kind of an order maps to what the work queue does about it:
open an item for a *cause* (one active item per order and cause), settle the
items of a cause (their reason to exist went away), or cancel every active item
of the order. Later features (shipments, messages) add rows here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orderdesk.workqueue.states import WorkItemKind, WorkOutcome

VERIFICATION = "verification"
RETURN = "return"


def hold_cause(reason: str) -> str:
    return f"hold:{reason}"


def shipment_cause(shipment_id: str) -> str:
    return f"shipment:{shipment_id}"


@dataclass(frozen=True, slots=True)
class OpenItem:
    kind: WorkItemKind
    cause: str
    title: str


@dataclass(frozen=True, slots=True)
class SettleCause:
    """The cause is gone: items nobody holds are done; a held one is left for its agent to close."""

    cause: str


@dataclass(frozen=True, slots=True)
class CancelAll:
    outcome: WorkOutcome = WorkOutcome.ORDER_CANCELLED


Reaction = OpenItem | SettleCause | CancelAll


def _words(value: str) -> str:
    return value.replace("_", " ")


def reactions_to(kind: str, changes: dict[str, Any], order_number: int) -> list[Reaction]:
    """What the work queue does when an order's timeline gains an event of `kind`."""
    if kind in ("verification_needed", "submit_for_verification"):
        failed = changes.get("failed_checks") or []
        why = ", ".join(_words(c) for c in failed) if failed else "manual verification"
        return [OpenItem(WorkItemKind.VERIFICATION, VERIFICATION, f"Verify order #{order_number}: {why}")]
    if kind in ("verify", "verified"):
        return [SettleCause(VERIFICATION)]
    if kind == "hold_placed":
        reason = (changes.get("hold") or [None, "other"])[1]
        return [
            OpenItem(
                WorkItemKind.EXCEPTION, hold_cause(reason), f"Order #{order_number} on hold: {_words(reason)}"
            )
        ]
    if kind == "hold_released":
        reason = (changes.get("hold") or ["other", None])[0]
        return [SettleCause(hold_cause(reason))]
    if kind == "shipment_exception" and changes.get("shipment"):
        attention = (changes.get("attention") or [None, "exception"])[1] or "exception"
        # A parcel that stopped moving is chased with the carrier; the rest is an exception.
        work_kind = WorkItemKind.TRACKING_FOLLOW_UP if attention == "stuck" else WorkItemKind.EXCEPTION
        return [
            OpenItem(
                work_kind,
                shipment_cause(changes["shipment"]),
                f"Order #{order_number}: shipment needs attention ({_words(attention)})",
            )
        ]
    # Cleared by hand, by a later normal scan, or by the delivery itself.
    if kind in ("shipment_attention_cleared", "tracking_update", "shipment_delivered") and changes.get(
        "shipment"
    ):
        return [SettleCause(shipment_cause(changes["shipment"]))]
    if kind == "request_return":
        return [OpenItem(WorkItemKind.RETURN, RETURN, f"Return requested for order #{order_number}")]
    if kind in ("receive_return", "reject_return"):
        return [SettleCause(RETURN)]
    if kind == "cancel":
        return [CancelAll()]
    return []
