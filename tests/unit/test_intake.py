"""Intake rules without a database: money, countries, postal codes, phones, totals."""

from __future__ import annotations

import copy

import pytest

from orderdesk.core import geo, money
from orderdesk.core.errors import ValidationFailed
from orderdesk.orders.intake import clean_order, unknown_sku_errors
from orderdesk.orders.schemas import OrderCreate

BASE = {
    "customer": {"name": "Sam Lee", "email": "Sam@Example.COM", "phone": "(415) 555-0132"},
    "shipping_address": {
        "line1": "1 Market St",
        "city": "San Francisco",
        "region": "CA",
        "postal_code": "94105",
        "country": "us",
    },
    "currency": "usd",
    "lines": [{"sku": " A-1 ", "quantity": 3, "unit_price_minor": 1000, "tax_minor": 255}],
    "shipping_minor": 500,
    "discount_minor": 200,
}


def order(**changes) -> OrderCreate:
    body = copy.deepcopy(BASE)
    body.update(changes)
    return OrderCreate.model_validate(body)


def errors_of(data: OrderCreate) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        clean_order(data)
    return {e.field: e.message for e in failed.value.errors}


def test_normalises_and_computes():
    clean = clean_order(order())
    assert clean.currency == "USD"
    assert clean.shipping_address["country"] == "US"
    assert clean.customer_email == "sam@example.com"
    assert clean.customer_phone == "+14155550132"
    assert clean.lines[0].sku == "A-1"
    assert clean.subtotal_minor == 3000
    assert clean.total_minor == 3000 + 255 + 500 - 200


@pytest.mark.parametrize(("code", "digits"), [("JPY", 0), ("KWD", 3), ("EUR", 2), ("CLF", 4), ("BHD", 3)])
def test_currency_exponents(code, digits):
    assert money.exponent(code) == digits


def test_formatting_uses_the_exponent():
    assert money.format_minor(1500, "JPY") == "1500 JPY"
    assert money.format_minor(1500, "KWD") == "1.500 KWD"
    assert money.format_minor(-5, "EUR") == "-0.05 EUR"


def test_metals_and_test_codes_are_not_order_currencies():
    assert not money.is_currency("XAU") and not money.is_currency("XTS")
    assert errors_of(order(currency="XAU"))["currency"].startswith("'XAU' is not an ISO 4217")


@pytest.mark.parametrize(
    ("country", "code", "ok"),
    [
        ("US", "94105", True),
        ("US", "9410", False),
        ("GB", "SW1A 1AA", True),
        ("GB", "12345", False),
        ("CA", "K1A 0B1", True),
        ("DE", "1011", False),
        ("NL", "1012 ab", True),
        ("JP", "100-0001", True),
        ("HK", "", True),
        ("FR", "", False),
        ("ZZ", "123", True),
    ],
)
def test_postal_code_rules(country, code, ok):
    problem = geo.postal_code_problem(country, code) if geo.is_country(country) else None
    assert (problem is None) is ok, problem


def test_every_problem_is_reported_at_once():
    bad = order(
        currency="ABC",
        shipping_address={"line1": " ", "city": "Berlin", "postal_code": "ABCDE", "country": "DE"},
        customer={"name": "Eve\x1b", "email": "eve@", "phone": "12"},
        total_minor=1,
    )
    errors = errors_of(bad)
    assert {
        "currency",
        "shipping_address.line1",
        "shipping_address.postal_code",
        "customer.name",
        "customer.email",
        "customer.phone",
    } <= set(errors)


def test_total_mismatch_names_the_computed_total():
    assert "add up to 3555" in errors_of(order(total_minor=3556))["total_minor"]
    assert clean_order(order(total_minor=3555)).total_minor == 3555


def test_discount_cannot_exceed_the_value():
    assert "discount_minor" in errors_of(order(discount_minor=10**6))


def test_overflowing_amounts_are_refused():
    huge = order(lines=[{"sku": "X", "quantity": 1_000_000, "unit_price_minor": money.MAX_AMOUNT_MINOR}])
    assert "lines[0].quantity" in errors_of(huge)


def test_contact_needs_email_or_phone():
    assert "customer" in errors_of(order(customer={"name": "No Contact"}))


def test_naive_dates_are_refused():
    assert "ship_by" in errors_of(order(ship_by="2026-12-01T10:00:00"))


def test_catalog_rules():
    clean = clean_order(order())
    assert unknown_sku_errors(clean.lines, {}) == []
    assert unknown_sku_errors(clean.lines, {"A-1": True}) == []
    assert "inactive" in unknown_sku_errors(clean.lines, {"A-1": False})[0].message
    assert "not in the catalog" in unknown_sku_errors(clean.lines, {"B": True})[0].message


def test_fingerprint_ignores_line_order():
    one = clean_order(
        order(
            lines=[
                {"sku": "A", "quantity": 1, "unit_price_minor": 1},
                {"sku": "B", "quantity": 2, "unit_price_minor": 1},
            ]
        )
    )
    two = clean_order(
        order(
            lines=[
                {"sku": "B", "quantity": 2, "unit_price_minor": 1},
                {"sku": "A", "quantity": 1, "unit_price_minor": 1},
            ]
        )
    )
    assert one.lines_fingerprint == two.lines_fingerprint
