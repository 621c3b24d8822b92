"""Intent rules and suggested actions: pure tables, no database."""

from __future__ import annotations

import pytest

from orderdesk.comms.intents import Intent, detect_intent, suggest_action
from orderdesk.orders.states import HoldReason, OrderStatus

S = OrderStatus

MESSAGES = [
    # (subject, text, intent, language)
    (
        "Where is my order?",
        "Hi, I ordered two weeks ago and it hasn't arrived yet.",
        Intent.WHERE_IS_MY_ORDER,
        "en",
    ),
    ("Order 1042", "When will it arrive? I need it for Saturday.", Intent.WHERE_IS_MY_ORDER, "en"),
    (
        "Bestellung 1042",
        "Hallo, wo ist meine Bestellung? Sie ist noch nicht angekommen.",
        Intent.WHERE_IS_MY_ORDER,
        "de",
    ),
    ("Pedido 1042", "Hola, ¿dónde está mi pedido? Todavía no ha llegado.", Intent.WHERE_IS_MY_ORDER, "es"),
    ("Cancel", "Please cancel my order, I bought it elsewhere.", Intent.CANCEL, "en"),
    ("Stornierung", "Ich möchte die Bestellung bitte stornieren.", Intent.CANCEL, "de"),
    ("Cancelar", "Quiero cancelar mi pedido, por favor.", Intent.CANCEL, "es"),
    ("Address", "I need to change my delivery address, I have moved.", Intent.CHANGE_ADDRESS, "en"),
    ("Adresse", "Bitte die Lieferadresse ändern, ich bin umgezogen.", Intent.CHANGE_ADDRESS, "de"),
    ("Dirección", "Necesito cambiar la dirección de entrega, por favor.", Intent.CHANGE_ADDRESS, "es"),
    ("Return", "The jacket is too small, I want to return it for a refund.", Intent.RETURN_REQUEST, "en"),
    ("Rücksendung", "Die Jacke passt nicht, ich möchte sie zurückschicken.", Intent.RETURN_REQUEST, "de"),
    ("Devolución", "La chaqueta no me queda, quiero devolver el pedido.", Intent.RETURN_REQUEST, "es"),
    ("Hello", "Do you also sell gift cards?", Intent.OTHER, "en"),
]


@pytest.mark.parametrize(("subject", "text", "intent", "language"), MESSAGES)
def test_each_intent_is_found_in_each_language(subject, text, intent, language):
    found = detect_intent(subject, text)
    assert found.intent is intent
    assert found.language == language
    if intent is not Intent.OTHER:
        assert found.confidence >= 0.75 and found.matched


def test_two_requests_at_once_lower_the_confidence():
    single = detect_intent("", "Please cancel my order.")
    double = detect_intent("", "Please cancel my order, or change my delivery address to Berlin.")
    assert single.intent is Intent.CANCEL
    assert double.confidence < single.confidence


def test_confidence_is_always_between_zero_and_one():
    for subject, text, *_ in MESSAGES:
        assert 0 <= detect_intent(subject, text).confidence <= 1
    assert detect_intent("", "").intent is Intent.OTHER


@pytest.mark.parametrize(
    ("intent", "status", "expected", "automatic"),
    [
        (Intent.CANCEL, S.AWAITING_VERIFICATION, "cancel order #1042: allowed, not yet shipped", False),
        (Intent.CANCEL, S.ALLOCATED, "cancel order #1042: allowed, not yet shipped", False),
        (Intent.CANCEL, S.PICKING, "cancel order #1042: not allowed without the warehouse: picking", False),
        (Intent.CANCEL, S.PACKED, "cancel order #1042: not allowed without the warehouse: packed", False),
        (Intent.CANCEL, S.SHIPPED, "cancel order #1042: not allowed: shipped; offer a return instead", False),
        (Intent.CANCEL, S.CANCELLED, "cancel order #1042: not allowed: cancelled", False),
        (Intent.CHANGE_ADDRESS, S.VERIFIED, "allowed, not yet packed", False),
        (Intent.CHANGE_ADDRESS, S.PICKING, "check with the warehouse first: picking", False),
        (Intent.CHANGE_ADDRESS, S.PACKED, "not allowed: packed", False),
        (Intent.RETURN_REQUEST, S.DELIVERED, "open a return for order #1042: allowed, delivered", False),
        (Intent.RETURN_REQUEST, S.ALLOCATED, "not delivered yet (allocated); offer to cancel instead", False),
        (Intent.RETURN_REQUEST, S.CLOSED, "not allowed: closed", False),
        (
            Intent.WHERE_IS_MY_ORDER,
            S.SHIPPED,
            "answer with tracking for order #1042: shipped (DHL 123)",
            True,
        ),
        (Intent.WHERE_IS_MY_ORDER, S.VERIFIED, "verified, not shipped yet", True),
        (Intent.OTHER, S.VERIFIED, "read and answer about order #1042 (verified)", False),
    ],
)
def test_suggestions_follow_the_state_machine(intent, status, expected, automatic):
    suggestion = suggest_action(intent, order_label="#1042", status=status, tracking="DHL 123")
    assert expected in suggestion.text
    assert suggestion.automatic_ok is automatic


def test_a_held_order_is_never_suggested_for_an_address_change_without_checking():
    suggestion = suggest_action(
        Intent.CHANGE_ADDRESS, order_label="#7", status=S.VERIFIED, holds=(HoldReason.FRAUD_REVIEW,)
    )
    assert "check with the warehouse first" in suggestion.text and "fraud review" in suggestion.text


def test_without_an_order_the_suggestion_is_to_find_it():
    assert "find the order" in suggest_action(Intent.CANCEL, order_label=None, status=None).text
