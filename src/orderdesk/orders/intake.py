"""Intake validation: turns an `OrderCreate` into a clean, computed order or lists every problem.

Pure (no I/O), so the API, the CSV importer, shop adapters and the console all
apply exactly the same rules, and they are tested without a database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import phonenumbers

from orderdesk.core import geo, money
from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.core.validation import Collector, has_control_characters
from orderdesk.orders.schemas import AddressIn, OrderCreate


@dataclass(frozen=True, slots=True)
class CleanLine:
    line_no: int
    sku: str
    description: str
    quantity: int
    unit_price_minor: int
    tax_minor: int
    total_minor: int


@dataclass(frozen=True, slots=True)
class CleanOrder:
    """An order that passed intake: normalised values and server-computed totals."""

    source: OrderCreate
    customer_name: str
    customer_email: str | None
    customer_phone: str | None
    shipping_address: dict
    billing_address: dict | None
    currency: str
    lines: tuple[CleanLine, ...]
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    lines_fingerprint: str
    tags: tuple[str, ...]


def _text_fields(check: Collector, prefix: str, values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is not None and has_control_characters(value):
            check.add(f"{prefix}{name}", "must not contain control characters")


def _address(check: Collector, prefix: str, address: AddressIn) -> dict:
    _text_fields(
        check,
        prefix,
        {
            k: getattr(address, k)
            for k in ("name", "company", "line1", "line2", "city", "region", "postal_code")
        },
    )
    country = address.country.upper()
    if not geo.is_country(country):
        check.add(f"{prefix}country", f"{address.country!r} is not an ISO 3166-1 alpha-2 country code")
    for name in ("line1", "city"):
        if not getattr(address, name).strip():
            check.add(f"{prefix}{name}", "is required")
    postal = geo.normalise_postal_code(address.postal_code or "")
    if geo.is_country(country) and (problem := geo.postal_code_problem(country, postal)):
        check.add(f"{prefix}postal_code", problem)
    cleaned = address.model_dump()
    cleaned.update(country=country, postal_code=postal or None)
    return cleaned


def _phone(check: Collector, raw: str | None, default_region: str) -> str | None:
    if not raw:
        return None
    try:
        parsed = phonenumbers.parse(raw, default_region if geo.is_country(default_region) else None)
    except phonenumbers.NumberParseException:
        check.add("customer.phone", f"{raw!r} is not a phone number")
        return None
    if not phonenumbers.is_valid_number(parsed):
        check.add("customer.phone", f"{raw!r} is not a valid phone number")
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def fingerprint(lines: tuple[CleanLine, ...]) -> str:
    """Same SKUs in the same quantities, whatever their order: the same fingerprint."""
    parts = sorted(f"{line.sku}\x1f{line.quantity}" for line in lines)
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def clean_order(data: OrderCreate) -> CleanOrder:
    """Validate and compute. Raises ValidationFailed listing every problem found."""
    check = Collector()
    _text_fields(check, "", {"external_ref": data.external_ref, "notes": data.notes})
    _text_fields(
        check,
        "customer.",
        {"name": data.customer.name, "email": data.customer.email, "phone": data.customer.phone},
    )
    customer_name = data.customer.name.strip()
    if not customer_name:
        check.add("customer.name", "is required")
    email = check.email("customer.email", data.customer.email) if data.customer.email else None
    shipping = _address(check, "shipping_address.", data.shipping_address)
    billing = _address(check, "billing_address.", data.billing_address) if data.billing_address else None
    phone = _phone(check, data.customer.phone, shipping["country"])
    if not email and not phone:
        check.add("customer", "needs an email address or a phone number")

    currency = data.currency.upper()
    if not money.is_currency(currency):
        check.add("currency", f"{data.currency!r} is not an ISO 4217 currency code")

    lines: list[CleanLine] = []
    for index, line in enumerate(data.lines):
        prefix = f"lines[{index}]."
        _text_fields(check, prefix, {"sku": line.sku, "description": line.description})
        if not line.sku.strip():
            check.add(f"{prefix}sku", "is required")
        total = line.quantity * line.unit_price_minor + line.tax_minor
        if total > money.MAX_AMOUNT_MINOR:
            check.add(f"{prefix}quantity", "quantity × unit price is larger than any order amount allowed")
        lines.append(
            CleanLine(
                line_no=index + 1,
                sku=line.sku.strip(),
                description=(line.description or "").strip(),
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                tax_minor=line.tax_minor,
                total_minor=total,
            )
        )
    subtotal = sum(line.quantity * line.unit_price_minor for line in lines)
    tax = sum(line.tax_minor for line in lines)
    total = subtotal + tax + data.shipping_minor - data.discount_minor
    if total < 0:
        check.add("discount_minor", "is larger than the order's value")
    elif total > money.MAX_AMOUNT_MINOR:
        check.add("lines", "the order total is larger than any order amount allowed")
    if data.total_minor is not None and data.total_minor != total and currency in money.CURRENCIES:
        check.add(
            "total_minor",
            f"is {data.total_minor} but the lines, tax, shipping and discount add up to {total} "
            f"({money.format_minor(total, currency)})",
        )
    if data.ship_by and data.deliver_by and data.deliver_by < data.ship_by:
        check.add("deliver_by", "is before ship_by")
    for name in ("ship_by", "deliver_by"):
        value = getattr(data, name)
        if value is not None and value.tzinfo is None:
            check.add(name, "needs a time zone (e.g. 2026-12-01T17:00:00Z)")
    tags = tuple(dict.fromkeys(t.strip().lower() for t in data.tags if t.strip()))
    for tag in tags:
        if has_control_characters(tag):
            check.add("tags", "must not contain control characters")
    check.raise_if_any()
    frozen_lines = tuple(lines)
    return CleanOrder(
        source=data,
        customer_name=customer_name,
        customer_email=email,
        customer_phone=phone,
        shipping_address=shipping,
        billing_address=billing,
        currency=currency,
        lines=frozen_lines,
        subtotal_minor=subtotal,
        tax_minor=tax,
        total_minor=total,
        lines_fingerprint=fingerprint(frozen_lines),
        tags=tags,
    )


def unknown_sku_errors(lines: tuple[CleanLine, ...], catalog: dict[str, bool]) -> list[FieldError]:
    """Errors for SKUs missing from, or inactive in, a non-empty catalog (sku -> active)."""
    if not catalog:
        return []
    errors = []
    for index, line in enumerate(lines):
        if line.sku not in catalog:
            errors.append(FieldError(f"lines[{index}].sku", f"{line.sku!r} is not in the catalog"))
        elif not catalog[line.sku]:
            errors.append(FieldError(f"lines[{index}].sku", f"{line.sku!r} is no longer sold (inactive)"))
    return errors


__all__ = ["CleanLine", "CleanOrder", "ValidationFailed", "clean_order", "unknown_sku_errors"]
