"""The automatic-answer rules, case by case."""

from __future__ import annotations

import pytest

from orderdesk.comms.auto_answer import decide
from orderdesk.comms.models import Direction, Intent, MessageChannel
from orderdesk.orders.states import OrderStatus

SAFE = dict(
    enabled=True,
    has_template=True,
    direction=Direction.INBOUND,
    channel=MessageChannel.EMAIL,
    intent=Intent.WHERE_IS_MY_ORDER,
    confidence=0.9,
    is_automated=False,
    order_status=OrderStatus.SHIPPED,
    answered_recently=False,
)


def test_a_confident_where_is_my_order_on_a_placed_order_is_answered():
    assert decide(**SAFE).answer


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"is_automated": True}, "automated message"),
        ({"enabled": False}, "does not allow"),
        ({"has_template": False}, "no auto-answer template"),
        ({"intent": Intent.RETURN_REQUEST}, "only where-is-my-order"),
        ({"intent": Intent.OTHER}, "only where-is-my-order"),
        ({"intent": None}, "only where-is-my-order"),
        ({"confidence": 0.4}, "uncertain"),
        ({"confidence": None}, "uncertain"),
        ({"order_status": None}, "not placed on an order"),
        ({"order_status": OrderStatus.CANCELLED}, "cancelled"),
        ({"answered_recently": True}, "answered automatically already"),
        ({"direction": Direction.OUTBOUND}, "not a customer's message"),
        ({"channel": MessageChannel.NOTE}, "not a customer's message"),
    ],
)
def test_anything_less_than_safe_goes_to_an_agent(change, reason):
    decision = decide(**{**SAFE, **change})
    assert not decision.answer and reason in decision.reason


@pytest.mark.parametrize("intent", [Intent.CANCEL, Intent.CHANGE_ADDRESS])
@pytest.mark.parametrize("status", list(OrderStatus))
def test_cancellations_and_address_changes_are_never_automatic(intent, status):
    decision = decide(**{**SAFE, "intent": intent, "order_status": status})
    assert not decision.answer and "never handled automatically" in decision.reason
    packed = status.value in {
        "packed",
        "partially_shipped",
        "shipped",
        "delivered",
        "return_requested",
        "return_received",
        "refunded",
        "return_rejected",
        "closed",
    }
    assert ("already packed" in decision.reason) == packed
