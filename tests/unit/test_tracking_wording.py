"""What customers read: every status and hold has words, internal events have none."""

from __future__ import annotations

import pytest

from orderdesk.fulfillment.models import ReturnReason, ReturnStatus, TrackingStatus
from orderdesk.orders.states import HoldReason, OrderStatus
from orderdesk.tracking import wording
from orderdesk.tracking.services import address_subject, parse_lookup


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_status_has_a_headline_without_internal_names(status):
    title, explanation = wording.headline(status)
    assert title and explanation
    assert "_" not in title + explanation


@pytest.mark.parametrize("reason", list(HoldReason))
def test_every_hold_reason_reads_safely(reason):
    title, explanation = wording.headline(OrderStatus.ALLOCATED, [reason])
    assert title == "Paused"
    assert "fraud" not in explanation.lower() and "_" not in explanation
    assert wording.event_text("hold_placed", {"hold": [None, reason.value], "note": "internal"}).startswith(
        "Paused"
    )


def test_a_fraud_review_reads_like_any_other_review():
    fraud = wording.headline(OrderStatus.VERIFIED, [HoldReason.FRAUD_REVIEW])
    other = wording.headline(OrderStatus.VERIFIED, [HoldReason.OTHER])
    assert fraud == other


def test_a_cancelled_order_is_cancelled_whatever_was_on_hold():
    assert wording.headline(OrderStatus.CANCELLED, [HoldReason.FRAUD_REVIEW])[0] == "Cancelled"
    assert wording.progress_step(OrderStatus.CANCELLED) is None


@pytest.mark.parametrize(
    "kind",
    [
        "check_decided",
        "payment_updated",
        "warehouse_overridden",
        "shipment_exception",
        "note_added",
        "message_received",
        "verification_needed",
        "close",
        "something_new",
    ],
)
def test_internal_or_unknown_events_are_not_shown(kind):
    assert wording.event_text(kind, {"note": "secret"}) is None


def test_only_the_last_released_hold_says_back_on_track():
    assert wording.event_text("hold_released", {"still_on_hold": ["fraud_review"]}) is None
    assert wording.event_text("hold_released", {"still_on_hold": []}) == "Back on track"


def test_tracking_returns_and_reasons_are_all_worded():
    assert all(wording.tracking_text(s) for s in TrackingStatus)
    assert all(wording.return_text(s) for s in ReturnStatus)
    assert set(wording.RETURN_REASONS) == set(ReturnReason)


@pytest.mark.parametrize(
    ("carrier", "number", "url", "expected"),
    [
        ("DHL", "123", None, "https://www.dhl.com/global-en/home/tracking.html?tracking-id=123"),
        ("Royal Mail", "AB 1", None, "https://www.royalmail.com/track-your-item#/tracking-results/AB%201"),
        ("UPS", "1Z", "https://example.com/t/1Z", "https://example.com/t/1Z"),
        ("UPS", "1Z", "javascript:alert(1)", "https://www.ups.com/track?tracknum=1Z"),
        ("Own Van", "7", None, None),
        ("DHL", None, None, None),
    ],
)
def test_carrier_links(carrier, number, url, expected):
    assert wording.carrier_link(carrier, number, url) == expected


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("203.0.113.7", "address:203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "address:2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "address:2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "address:203.0.113.7"),
        (None, "address:unknown"),
        ("testclient", "address:unknown"),
    ],
)
def test_address_subjects(address, subject):
    assert address_subject(address) == subject


def test_lookup_input_is_read_leniently():
    assert parse_lookup(" #1042 ", " Erika@Example.com ") == (1042, "erika@example.com", None)
    assert parse_lookup("1042", "sw1a 1aa") == (1042, None, "SW1A1AA")
    assert parse_lookup("1042", "10-117") == (1042, None, "10117")
