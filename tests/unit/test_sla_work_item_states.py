"""The work item lifecycle table, exhaustively, and the order events that open or settle work."""

from __future__ import annotations

import itertools

import pytest

from orderdesk.workqueue import reactions
from orderdesk.workqueue.states import (
    ACTIVE,
    CLOCK_PAUSED,
    FINISHED,
    TRANSITIONS,
    WorkAction,
    WorkItemKind,
    WorkItemStatus,
    WorkOutcome,
    WorkRole,
    WorkTransitionRefused,
    allowed_work_actions,
    next_work_status,
    work_actions_for,
    work_role,
)

S, A = WorkItemStatus, WorkAction

EXPECTED = {
    S.OPEN: {A.CLAIM: S.CLAIMED, A.REASSIGN: S.CLAIMED, A.COMPLETE: S.DONE, A.CANCEL: S.CANCELLED},
    S.CLAIMED: {
        A.HAND_BACK: S.OPEN,
        A.EXPIRE: S.OPEN,
        A.SNOOZE: S.SNOOZED,
        A.WAIT_CUSTOMER: S.WAITING_CUSTOMER,
        A.WAIT_CLIENT: S.WAITING_CLIENT,
        A.REASSIGN: S.CLAIMED,
        A.COMPLETE: S.DONE,
        A.CANCEL: S.CANCELLED,
    },
    S.SNOOZED: {A.WAKE: S.OPEN, A.REASSIGN: S.CLAIMED, A.COMPLETE: S.DONE, A.CANCEL: S.CANCELLED},
    S.WAITING_CUSTOMER: {A.RESUME: S.OPEN, A.COMPLETE: S.DONE, A.CANCEL: S.CANCELLED},
    S.WAITING_CLIENT: {A.RESUME: S.OPEN, A.COMPLETE: S.DONE, A.CANCEL: S.CANCELLED},
    S.DONE: {},
    S.CANCELLED: {},
}


@pytest.mark.parametrize(("status", "action"), list(itertools.product(WorkItemStatus, WorkAction)))
def test_every_status_and_action(status, action):
    expected = EXPECTED[status].get(action)
    if expected is None:
        with pytest.raises(WorkTransitionRefused) as caught:
            next_work_status(status, action)
        assert caught.value.allowed == allowed_work_actions(status)
        assert action.value.replace("_", " ") in str(caught.value)
    else:
        assert next_work_status(status, action) is expected


def test_table_has_nothing_unexpected():
    flattened = {(s, a): t for s, actions in EXPECTED.items() for a, t in actions.items()}
    assert flattened == TRANSITIONS


# What each role is offered by hand, per status: the item page's buttons.
OFFERED = {
    (S.CLAIMED, WorkRole.HOLDER): {A.HAND_BACK, A.SNOOZE, A.WAIT_CUSTOMER, A.WAIT_CLIENT, A.COMPLETE},
    (S.CLAIMED, WorkRole.LEAD): {
        A.HAND_BACK,
        A.SNOOZE,
        A.WAIT_CUSTOMER,
        A.WAIT_CLIENT,
        A.REASSIGN,
        A.COMPLETE,
        A.CANCEL,
    },
    (S.OPEN, WorkRole.LEAD): {A.REASSIGN, A.COMPLETE, A.CANCEL},
    (S.SNOOZED, WorkRole.LEAD): {A.REASSIGN, A.COMPLETE, A.CANCEL},
    (S.WAITING_CUSTOMER, WorkRole.LEAD): {A.RESUME, A.COMPLETE, A.CANCEL},
    (S.WAITING_CLIENT, WorkRole.LEAD): {A.RESUME, A.COMPLETE, A.CANCEL},
    (S.WAITING_CUSTOMER, WorkRole.STAFF): {A.RESUME},
    (S.WAITING_CLIENT, WorkRole.STAFF): {A.RESUME},
}


# Only a claimed item has a holder (`work_role` is HOLDER only for the agent holding the lease).
VIEWERS = [
    (status, role)
    for status, role in itertools.product(WorkItemStatus, WorkRole)
    if role is not WorkRole.HOLDER or status is S.CLAIMED
]


@pytest.mark.parametrize(("status", "role"), VIEWERS)
def test_actions_offered_by_hand(status, role):
    offered = work_actions_for(status, role)
    assert set(offered) == OFFERED.get((status, role), set())
    assert set(offered) <= set(allowed_work_actions(status))
    assert A.CLAIM not in offered and A.EXPIRE not in offered and A.WAKE not in offered


def test_who_is_looking():
    assert work_role(is_lead=True, holds_item=False) is WorkRole.LEAD
    assert work_role(is_lead=False, holds_item=True) is WorkRole.HOLDER
    assert work_role(is_lead=False, holds_item=False) is WorkRole.STAFF


def test_status_groups():
    assert ACTIVE | FINISHED == set(WorkItemStatus)
    assert not ACTIVE & FINISHED
    assert CLOCK_PAUSED < ACTIVE
    for status in FINISHED:
        assert allowed_work_actions(status) == ()


def test_verification_opens_and_verify_settles():
    [opened] = reactions.reactions_to("verification_needed", {"failed_checks": ["payment_confirmed"]}, 1042)
    assert opened == reactions.OpenItem(
        WorkItemKind.VERIFICATION, "verification", "Verify order #1042: payment confirmed"
    )
    for kind in ("verify", "verified"):
        assert reactions.reactions_to(kind, {}, 1042) == [reactions.SettleCause("verification")]


def test_holds_open_one_item_per_reason():
    [placed] = reactions.reactions_to("hold_placed", {"hold": [None, "address_problem"]}, 7)
    assert placed.kind is WorkItemKind.EXCEPTION and placed.cause == "hold:address_problem"
    assert "address problem" in placed.title
    released = reactions.reactions_to("hold_released", {"hold": ["address_problem", None]}, 7)
    assert released == [reactions.SettleCause("hold:address_problem")]


def test_returns_and_cancellation():
    [opened] = reactions.reactions_to("request_return", {}, 9)
    assert opened.kind is WorkItemKind.RETURN
    assert reactions.reactions_to("receive_return", {}, 9) == [reactions.SettleCause("return")]
    assert reactions.reactions_to("cancel", {}, 9) == [reactions.CancelAll(WorkOutcome.ORDER_CANCELLED)]


@pytest.mark.parametrize("kind", ["created", "allocate", "pack", "ship", "payment_updated", "check_decided"])
def test_other_events_leave_the_queue_alone(kind):
    assert reactions.reactions_to(kind, {}, 1) == []


def test_shipment_exceptions_open_work_and_clearing_settles_it():
    shipment = "0190aaaa-0000-7000-8000-000000000001"
    [stuck] = reactions.reactions_to(
        "shipment_exception", {"shipment": shipment, "attention": [None, "stuck"]}, 5
    )
    assert stuck.kind is WorkItemKind.TRACKING_FOLLOW_UP and stuck.cause == f"shipment:{shipment}"
    assert "stuck" in stuck.title
    [failed] = reactions.reactions_to(
        "shipment_exception", {"shipment": shipment, "attention": [None, "failed_attempt"]}, 5
    )
    assert failed.kind is WorkItemKind.EXCEPTION and "failed attempt" in failed.title
    cleared = reactions.reactions_to(
        "shipment_attention_cleared", {"shipment": shipment, "attention": ["stuck", None]}, 5
    )
    assert cleared == [reactions.SettleCause(f"shipment:{shipment}")]


@pytest.mark.parametrize("kind", ["tracking_update", "shipment_delivered"])
def test_a_shipment_back_on_track_settles_its_item(kind):
    assert reactions.reactions_to(kind, {"shipment": "s-1", "tracking": ["stuck", "in_transit"]}, 5) == [
        reactions.SettleCause("shipment:s-1")
    ]
