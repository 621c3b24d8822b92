"""The lifecycle table, every (state, action) pair, with and without holds."""

from __future__ import annotations

import itertools

import pytest

from orderdesk.orders.states import (
    HOLDABLE,
    PLATFORM_ACTIONS,
    TERMINAL,
    TRANSITIONS,
    Action,
    HoldReason,
    OrderStatus,
    TransitionRefused,
    allowed_actions,
    next_status,
)

S, A = OrderStatus, Action

# The lifecycle written out as a person would describe it; the table must agree exactly.
EXPECTED = {
    S.CAPTURED: {
        A.SUBMIT_FOR_VERIFICATION: S.AWAITING_VERIFICATION,
        A.VERIFY: S.VERIFIED,
        A.CANCEL: S.CANCELLED,
    },
    S.AWAITING_VERIFICATION: {A.VERIFY: S.VERIFIED, A.CANCEL: S.CANCELLED},
    S.VERIFIED: {A.ALLOCATE: S.ALLOCATED, A.BACKORDER: S.BACKORDERED, A.CANCEL: S.CANCELLED},
    S.BACKORDERED: {A.ALLOCATE: S.ALLOCATED, A.SHIP_PARTIALLY: S.PARTIALLY_SHIPPED, A.CANCEL: S.CANCELLED},
    S.ALLOCATED: {A.START_PICKING: S.PICKING, A.SHIP_PARTIALLY: S.PARTIALLY_SHIPPED, A.CANCEL: S.CANCELLED},
    S.PICKING: {A.PACK: S.PACKED, A.SHIP_PARTIALLY: S.PARTIALLY_SHIPPED, A.CANCEL: S.CANCELLED},
    S.PACKED: {A.SHIP: S.SHIPPED, A.SHIP_PARTIALLY: S.PARTIALLY_SHIPPED, A.CANCEL: S.CANCELLED},
    S.PARTIALLY_SHIPPED: {A.SHIP: S.SHIPPED},
    S.SHIPPED: {A.DELIVER: S.DELIVERED},
    S.DELIVERED: {A.REQUEST_RETURN: S.RETURN_REQUESTED, A.CLOSE: S.CLOSED},
    S.RETURN_REQUESTED: {A.RECEIVE_RETURN: S.RETURN_RECEIVED, A.REJECT_RETURN: S.RETURN_REJECTED},
    S.RETURN_RECEIVED: {A.REFUND: S.REFUNDED, A.REJECT_RETURN: S.RETURN_REJECTED},
    S.REFUNDED: {A.CLOSE: S.CLOSED},
    S.RETURN_REJECTED: {A.CLOSE: S.CLOSED},
    S.CLOSED: {},
    S.CANCELLED: {},
}
LIFECYCLE_ACTIONS = [
    a for a in Action if a not in (A.PLACE_HOLD, A.RELEASE_HOLD) and a not in PLATFORM_ACTIONS
]
# Steps the platform takes as a consequence of others: a hold that frees stock, a settled return.
PLATFORM = {
    (S.ALLOCATED, A.RELEASE_STOCK): S.VERIFIED,
    (S.BACKORDERED, A.RELEASE_STOCK): S.VERIFIED,
    (S.REFUNDED, A.REOPEN_RETURNS): S.DELIVERED,
    (S.RETURN_REJECTED, A.REOPEN_RETURNS): S.DELIVERED,
}


def test_expected_table_covers_every_status():
    assert set(EXPECTED) == set(OrderStatus)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(OrderStatus, LIFECYCLE_ACTIONS)))
def test_every_pair_without_holds(status, action):
    expected = EXPECTED[status].get(action)
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            next_status(status, action)
        assert refused.value.status is status
        assert action not in refused.value.allowed
        assert status.value.replace("_", " ") in refused.value.reason
    else:
        assert next_status(status, action) is expected
        assert action in allowed_actions(status)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(OrderStatus, sorted(PLATFORM_ACTIONS))))
def test_platform_steps_are_never_offered_and_holds_do_not_stop_them(status, action):
    for holds in ([], [HoldReason.AWAITING_PAYMENT]):
        assert action not in allowed_actions(status, holds)
        expected = PLATFORM.get((status, action))
        if expected is None:
            with pytest.raises(TransitionRefused):
                next_status(status, action, holds)
        else:
            assert next_status(status, action, holds) is expected


@pytest.mark.parametrize(("status", "action"), list(itertools.product(OrderStatus, LIFECYCLE_ACTIONS)))
def test_every_pair_on_hold_allows_only_cancel(status, action):
    holds = [HoldReason.FRAUD_REVIEW]
    if action is A.CANCEL and A.CANCEL in EXPECTED[status]:
        assert next_status(status, action, holds) is S.CANCELLED
        return
    with pytest.raises(TransitionRefused) as refused:
        next_status(status, action, holds)
    if action in EXPECTED[status]:
        assert "on hold" in refused.value.reason


@pytest.mark.parametrize("status", list(OrderStatus))
def test_holds_can_be_placed_only_while_fulfilment_is_open(status):
    if status in HOLDABLE:
        assert next_status(status, A.PLACE_HOLD, (), HoldReason.OUT_OF_STOCK) is status
    else:
        with pytest.raises(TransitionRefused):
            next_status(status, A.PLACE_HOLD, (), HoldReason.OUT_OF_STOCK)


def test_several_holds_each_released_separately_resume_where_it_stood():
    status = S.PICKING
    holds = {HoldReason.ADDRESS_PROBLEM}
    assert next_status(status, A.PLACE_HOLD, holds, HoldReason.AWAITING_PAYMENT) is status
    holds.add(HoldReason.AWAITING_PAYMENT)
    with pytest.raises(TransitionRefused, match="already on hold"):
        next_status(status, A.PLACE_HOLD, holds, HoldReason.ADDRESS_PROBLEM)
    with pytest.raises(TransitionRefused, match="no active"):
        next_status(status, A.RELEASE_HOLD, holds, HoldReason.FRAUD_REVIEW)
    assert next_status(status, A.RELEASE_HOLD, holds, HoldReason.ADDRESS_PROBLEM) is status
    holds.discard(HoldReason.ADDRESS_PROBLEM)
    assert A.PACK not in allowed_actions(status, holds)
    holds.discard(HoldReason.AWAITING_PAYMENT)
    assert A.PACK in allowed_actions(status, holds)


def test_release_without_holds_and_hold_without_reason_are_refused():
    with pytest.raises(TransitionRefused):
        next_status(S.VERIFIED, A.RELEASE_HOLD, (), HoldReason.OTHER)
    with pytest.raises(TransitionRefused, match="reason is required"):
        next_status(S.VERIFIED, A.PLACE_HOLD, (), None)


def test_terminal_states_allow_nothing():
    for status in TERMINAL:
        assert allowed_actions(status) == ()


def test_cancellation_only_before_anything_shipped():
    cancellable = {status for (status, action) in TRANSITIONS if action is A.CANCEL}
    assert S.PARTIALLY_SHIPPED not in cancellable and S.SHIPPED not in cancellable
    assert S.PACKED in cancellable
