"""The work item lifecycle as a pure table: no I/O, no ORM, tested exhaustively.

An item is *active* until it is done or cancelled. Only an open item can be
claimed by "Get next"; a claimed item belongs to one agent until they finish it,
hand it back, snooze it, park it waiting on someone, or their lease runs out.
"""

from __future__ import annotations

import enum


class WorkItemKind(enum.StrEnum):
    ORDER_ENTRY = "order_entry"  # an order that came by phone, fax or email, to be typed in
    VERIFICATION = "verification"  # an order waiting for a person to verify it
    EXCEPTION = "exception"  # a hold, a stuck or failed shipment: something is in the way
    CUSTOMER_MESSAGE = "customer_message"  # a customer wrote and waits for an answer
    TRACKING_FOLLOW_UP = "tracking_follow_up"  # a parcel that stopped moving
    RETURN = "return"  # a return request to handle


class WorkItemStatus(enum.StrEnum):
    OPEN = "open"  # in the queue, waiting for an agent
    CLAIMED = "claimed"  # an agent holds it under a lease
    SNOOZED = "snoozed"  # set aside until `snoozed_until`; the SLA clock keeps running
    WAITING_CUSTOMER = "waiting_customer"  # parked until the customer answers; clock paused
    WAITING_CLIENT = "waiting_client"  # parked until the client company decides; clock paused
    DONE = "done"  # finished, with an outcome
    CANCELLED = "cancelled"  # no longer needed (e.g. the order was cancelled)


class WorkOutcome(enum.StrEnum):
    RESOLVED = "resolved"  # the agent dealt with it
    NO_ACTION_NEEDED = "no_action_needed"  # nothing had to be done after all
    ESCALATED = "escalated"  # passed on outside the queue (client, carrier, a specialist)
    DUPLICATE = "duplicate"  # the same work exists elsewhere
    RESOLVED_ELSEWHERE = "resolved_elsewhere"  # its cause went away while nobody held the item
    ORDER_CANCELLED = "order_cancelled"  # its order was cancelled
    WITHDRAWN = "withdrawn"  # a lead removed it


class WorkAction(enum.StrEnum):
    CLAIM = "claim"
    HAND_BACK = "hand_back"
    EXPIRE = "expire"  # the lease ran out: the agent vanished
    SNOOZE = "snooze"
    WAKE = "wake"
    WAIT_CUSTOMER = "wait_customer"
    WAIT_CLIENT = "wait_client"
    RESUME = "resume"
    REASSIGN = "reassign"
    COMPLETE = "complete"
    CANCEL = "cancel"


S = WorkItemStatus
A = WorkAction

ACTIVE = frozenset({S.OPEN, S.CLAIMED, S.SNOOZED, S.WAITING_CUSTOMER, S.WAITING_CLIENT})
FINISHED = frozenset({S.DONE, S.CANCELLED})
# The SLA clock stops while someone outside the operations team has the next move.
CLOCK_PAUSED = frozenset({S.WAITING_CUSTOMER, S.WAITING_CLIENT})
# What an agent may record when they mark an item done.
AGENT_OUTCOMES = (
    WorkOutcome.RESOLVED,
    WorkOutcome.NO_ACTION_NEEDED,
    WorkOutcome.ESCALATED,
    WorkOutcome.DUPLICATE,
)

TRANSITIONS: dict[tuple[WorkItemStatus, WorkAction], WorkItemStatus] = {
    (S.OPEN, A.CLAIM): S.CLAIMED,
    (S.CLAIMED, A.HAND_BACK): S.OPEN,
    (S.CLAIMED, A.EXPIRE): S.OPEN,
    (S.CLAIMED, A.SNOOZE): S.SNOOZED,
    (S.SNOOZED, A.WAKE): S.OPEN,
    (S.CLAIMED, A.WAIT_CUSTOMER): S.WAITING_CUSTOMER,
    (S.CLAIMED, A.WAIT_CLIENT): S.WAITING_CLIENT,
    (S.WAITING_CUSTOMER, A.RESUME): S.OPEN,
    (S.WAITING_CLIENT, A.RESUME): S.OPEN,
    # A lead may put anyone on an item that is not parked on someone outside.
    (S.OPEN, A.REASSIGN): S.CLAIMED,
    (S.CLAIMED, A.REASSIGN): S.CLAIMED,
    (S.SNOOZED, A.REASSIGN): S.CLAIMED,
    # Done is recorded by the agent holding it, or by the system when its cause went away.
    **{(status, A.COMPLETE): S.DONE for status in ACTIVE},
    **{(status, A.CANCEL): S.CANCELLED for status in ACTIVE},
}


class WorkTransitionRefused(Exception):
    def __init__(self, status: WorkItemStatus, action: WorkAction, allowed: tuple[WorkAction, ...]):
        self.status = status
        self.action = action
        self.allowed = allowed
        super().__init__(
            f"Cannot {action.value.replace('_', ' ')} a work item that is {status.value.replace('_', ' ')}"
        )


def allowed_work_actions(status: WorkItemStatus) -> tuple[WorkAction, ...]:
    """Every action allowed from `status`, in declaration order."""
    return tuple(action for action in WorkAction if (status, action) in TRANSITIONS)


def next_work_status(status: WorkItemStatus, action: WorkAction) -> WorkItemStatus:
    """The status after `action`. Raises WorkTransitionRefused when it is not allowed."""
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        raise WorkTransitionRefused(status, action, allowed_work_actions(status)) from None
