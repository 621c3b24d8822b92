"""The order lifecycle as a pure table: no I/O, no ORM, tested exhaustively.

Holds are orthogonal to the status: an order on hold keeps its status, and when
its last hold is released it resumes exactly where it stood. While any hold is
active only hold management and cancellation are allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class OrderStatus(enum.StrEnum):
    CAPTURED = "captured"  # taken in, checks not yet run
    AWAITING_VERIFICATION = "awaiting_verification"  # a check failed; an agent must decide
    VERIFIED = "verified"  # payment, address and details confirmed
    ALLOCATED = "allocated"  # stock reserved at a fulfillment center
    BACKORDERED = "backordered"  # verified, but some lines have no stock yet
    PICKING = "picking"  # the warehouse is picking the goods
    PACKED = "packed"  # packed, waiting for the carrier
    PARTIALLY_SHIPPED = "partially_shipped"  # some shipments left, others still to go
    SHIPPED = "shipped"  # everything is with the carrier
    DELIVERED = "delivered"  # every shipment delivered
    RETURN_REQUESTED = "return_requested"  # the customer asked to send goods back
    RETURN_RECEIVED = "return_received"  # the goods came back to a warehouse
    REFUNDED = "refunded"  # the return was refunded
    RETURN_REJECTED = "return_rejected"  # the return was refused (window, condition)
    CLOSED = "closed"  # nothing left to do
    CANCELLED = "cancelled"  # stopped before shipping


class Action(enum.StrEnum):
    SUBMIT_FOR_VERIFICATION = "submit_for_verification"
    VERIFY = "verify"
    ALLOCATE = "allocate"
    BACKORDER = "backorder"
    START_PICKING = "start_picking"
    PACK = "pack"
    SHIP_PARTIALLY = "ship_partially"
    SHIP = "ship"
    DELIVER = "deliver"
    REQUEST_RETURN = "request_return"
    RECEIVE_RETURN = "receive_return"
    REFUND = "refund"
    REJECT_RETURN = "reject_return"
    CLOSE = "close"
    CANCEL = "cancel"
    PLACE_HOLD = "place_hold"
    RELEASE_HOLD = "release_hold"
    # Taken by the platform, never offered to people (see PLATFORM_ACTIONS).
    RELEASE_STOCK = "release_stock"
    REOPEN_RETURNS = "reopen_returns"


class HoldReason(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    ADDRESS_PROBLEM = "address_problem"
    FRAUD_REVIEW = "fraud_review"
    OUT_OF_STOCK = "out_of_stock"
    CUSTOMER_REQUEST = "customer_request"
    OTHER = "other"


S = OrderStatus
A = Action

# (status, action) -> the status after it. Hold actions are handled below.
TRANSITIONS: dict[tuple[OrderStatus, Action], OrderStatus] = {
    (S.CAPTURED, A.SUBMIT_FOR_VERIFICATION): S.AWAITING_VERIFICATION,
    (S.CAPTURED, A.VERIFY): S.VERIFIED,
    (S.AWAITING_VERIFICATION, A.VERIFY): S.VERIFIED,
    (S.VERIFIED, A.ALLOCATE): S.ALLOCATED,
    (S.VERIFIED, A.BACKORDER): S.BACKORDERED,
    (S.BACKORDERED, A.ALLOCATE): S.ALLOCATED,
    (S.ALLOCATED, A.START_PICKING): S.PICKING,
    (S.PICKING, A.PACK): S.PACKED,
    # Split orders ship from several warehouses, so a part can leave at any step.
    (S.ALLOCATED, A.SHIP_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.PICKING, A.SHIP_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.PACKED, A.SHIP_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.BACKORDERED, A.SHIP_PARTIALLY): S.PARTIALLY_SHIPPED,
    (S.PACKED, A.SHIP): S.SHIPPED,
    (S.PARTIALLY_SHIPPED, A.SHIP): S.SHIPPED,
    (S.SHIPPED, A.DELIVER): S.DELIVERED,
    (S.DELIVERED, A.REQUEST_RETURN): S.RETURN_REQUESTED,
    (S.RETURN_REQUESTED, A.RECEIVE_RETURN): S.RETURN_RECEIVED,
    (S.RETURN_REQUESTED, A.REJECT_RETURN): S.RETURN_REJECTED,
    (S.RETURN_RECEIVED, A.REFUND): S.REFUNDED,
    (S.RETURN_RECEIVED, A.REJECT_RETURN): S.RETURN_REJECTED,
    # A hold that frees stock gives an allocated or backordered order's units back;
    # the order is verified again and is allocated anew when the hold ends.
    (S.ALLOCATED, A.RELEASE_STOCK): S.VERIFIED,
    (S.BACKORDERED, A.RELEASE_STOCK): S.VERIFIED,
    # A settled return leaves the rest of a delivered order returnable while the
    # window lasts: partial returns over time.
    (S.REFUNDED, A.REOPEN_RETURNS): S.DELIVERED,
    (S.RETURN_REJECTED, A.REOPEN_RETURNS): S.DELIVERED,
    (S.DELIVERED, A.CLOSE): S.CLOSED,
    (S.REFUNDED, A.CLOSE): S.CLOSED,
    (S.RETURN_REJECTED, A.CLOSE): S.CLOSED,
    **{
        (status, A.CANCEL): S.CANCELLED
        for status in (
            S.CAPTURED,
            S.AWAITING_VERIFICATION,
            S.VERIFIED,
            S.ALLOCATED,
            S.BACKORDERED,
            S.PICKING,
            S.PACKED,
        )
    },
}

# Holds stop fulfillment; once goods have left entirely there is nothing left to hold.
HOLDABLE = frozenset(
    {
        S.CAPTURED,
        S.AWAITING_VERIFICATION,
        S.VERIFIED,
        S.ALLOCATED,
        S.BACKORDERED,
        S.PICKING,
        S.PACKED,
        S.PARTIALLY_SHIPPED,
    }
)
TERMINAL = frozenset({S.CLOSED, S.CANCELLED})
# Consequences of other steps, taken by the platform only: never listed as allowed
# for people, and a hold does not stop them (releasing stock is what some holds do).
PLATFORM_ACTIONS = frozenset({A.RELEASE_STOCK, A.REOPEN_RETURNS})
# Statuses whose orders still hold reserved stock.
RESERVES_STOCK = frozenset({S.ALLOCATED, S.PICKING, S.PACKED, S.PARTIALLY_SHIPPED})


class TransitionRefused(Exception):
    """The action is not allowed; carries what is, for the error message and the buttons."""

    def __init__(self, status: OrderStatus, action: Action, allowed: tuple[Action, ...], reason: str):
        super().__init__(reason)
        self.status = status
        self.action = action
        self.allowed = allowed
        self.reason = reason


def allowed_actions(status: OrderStatus, active_holds: Iterable[HoldReason] = ()) -> tuple[Action, ...]:
    """Every action allowed now, in lifecycle order."""
    holds = frozenset(active_holds)
    allowed: list[Action] = []
    for action in Action:
        if action in PLATFORM_ACTIONS:
            continue
        if action is A.PLACE_HOLD:
            ok = status in HOLDABLE and len(holds) < len(HoldReason)
        elif action is A.RELEASE_HOLD:
            ok = bool(holds)
        elif holds and action is not A.CANCEL:
            ok = False
        else:
            ok = (status, action) in TRANSITIONS
        if ok:
            allowed.append(action)
    return tuple(allowed)


def next_status(
    status: OrderStatus,
    action: Action,
    active_holds: Iterable[HoldReason] = (),
    hold_reason: HoldReason | None = None,
) -> OrderStatus:
    """The status after `action`. Hold actions leave the status as it is.

    Raises TransitionRefused when the action is not allowed from here.
    """
    holds = frozenset(active_holds)
    if action in PLATFORM_ACTIONS:
        if (status, action) not in TRANSITIONS:
            reason = (
                f"cannot {action.value.replace('_', ' ')} an order that is {status.value.replace('_', ' ')}"
            )
            raise TransitionRefused(status, action, allowed_actions(status, holds), reason)
        return TRANSITIONS[(status, action)]
    allowed = allowed_actions(status, holds)
    if action not in allowed:
        if holds and (status, action) in TRANSITIONS:
            reason = f"the order is on hold ({', '.join(sorted(holds))}); release the hold first"
        else:
            reason = (
                f"cannot {action.value.replace('_', ' ')} an order that is {status.value.replace('_', ' ')}"
            )
        raise TransitionRefused(status, action, allowed, reason)
    if action is A.PLACE_HOLD:
        if hold_reason is None or hold_reason in holds:
            reason = (
                "a hold reason is required" if hold_reason is None else f"already on hold for {hold_reason}"
            )
            raise TransitionRefused(status, action, allowed, reason)
        return status
    if action is A.RELEASE_HOLD:
        if hold_reason is None or hold_reason not in holds:
            raise TransitionRefused(status, action, allowed, f"the order has no active {hold_reason} hold")
        return status
    return TRANSITIONS[(status, action)]
