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


class WorkRole(enum.StrEnum):
    """Who is looking at an item, as far as its buttons are concerned."""

    HOLDER = "holder"  # the agent holding the claimed item under a lease
    LEAD = "lead"  # a team lead or administrator: may act on any item of their clients
    STAFF = "staff"  # any other agent


R = WorkRole
# Who may take each action by hand. Claiming is Get next's; expiring and waking are the system's.
PERFORMED_BY: dict[WorkAction, frozenset[WorkRole]] = {
    A.HAND_BACK: frozenset({R.HOLDER, R.LEAD}),
    A.SNOOZE: frozenset({R.HOLDER, R.LEAD}),
    A.WAIT_CUSTOMER: frozenset({R.HOLDER, R.LEAD}),
    A.WAIT_CLIENT: frozenset({R.HOLDER, R.LEAD}),
    # Whoever receives the awaited answer brings the item back.
    A.RESUME: frozenset({R.HOLDER, R.LEAD, R.STAFF}),
    A.REASSIGN: frozenset({R.LEAD}),
    A.COMPLETE: frozenset({R.HOLDER, R.LEAD}),
    # Cancelling by hand is a lead withdrawing work that is not needed.
    A.CANCEL: frozenset({R.LEAD}),
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


def work_role(*, is_lead: bool, holds_item: bool) -> WorkRole:
    """The role that decides which of an item's actions a person is offered."""
    if is_lead:
        return WorkRole.LEAD
    return WorkRole.HOLDER if holds_item else WorkRole.STAFF


def work_actions_for(status: WorkItemStatus, role: WorkRole) -> tuple[WorkAction, ...]:
    """The actions `role` may take by hand on an item in `status`, in declaration order."""
    return tuple(action for action in allowed_work_actions(status) if role in PERFORMED_BY.get(action, ()))
