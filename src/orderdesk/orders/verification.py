"""Verification checks run at capture. Pure: each takes the clean order and the tenant's
policy (plus, for duplicates, what the database found) and says passed or failed, and why."""

from __future__ import annotations

from dataclasses import dataclass

from orderdesk.core import money
from orderdesk.orders.intake import CleanOrder
from orderdesk.orders.models import CheckResult, PaymentStatus

PAYMENT = "payment_confirmed"
ADDRESS = "address_complete"
CONTACT = "contact_valid"
HIGH_VALUE = "high_value"
COUNTRY_MISMATCH = "country_mismatch"
DUPLICATE = "duplicate_suspected"
ALL_CHECKS = (PAYMENT, ADDRESS, CONTACT, HIGH_VALUE, COUNTRY_MISMATCH, DUPLICATE)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """A tenant's verification settings (from `tenants.settings["verification"]`)."""

    auto_verify: bool = False
    # Per currency, the total (minor units) from which an order needs a person's look.
    high_value_minor: dict[str, int] | None = None
    duplicate_window_minutes: int = 60

    @classmethod
    def from_settings(cls, settings: dict) -> VerificationPolicy:
        raw = settings.get("verification", {}) if isinstance(settings, dict) else {}
        return cls(
            auto_verify=bool(raw.get("auto_verify", False)),
            high_value_minor={str(k).upper(): int(v) for k, v in (raw.get("high_value_minor") or {}).items()},
            duplicate_window_minutes=int(raw.get("duplicate_window_minutes", 60)),
        )


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    check: str
    result: CheckResult
    detail: str

    @property
    def passed(self) -> bool:
        return self.result is CheckResult.PASSED


def _ok(check: str, detail: str) -> CheckOutcome:
    return CheckOutcome(check, CheckResult.PASSED, detail)


def _fail(check: str, detail: str) -> CheckOutcome:
    return CheckOutcome(check, CheckResult.FAILED, detail)


def payment_check(payment_status: PaymentStatus) -> CheckOutcome:
    if payment_status in (PaymentStatus.AUTHORIZED, PaymentStatus.PAID):
        return _ok(PAYMENT, f"payment is {payment_status.value}")
    return _fail(PAYMENT, f"payment is {payment_status.value}, not authorized or paid")


def run_checks(
    order: CleanOrder, policy: VerificationPolicy, duplicate_numbers: list[int]
) -> list[CheckOutcome]:
    """Every check for one order, in a fixed order."""
    outcomes = [payment_check(order.source.payment_status)]

    address = order.shipping_address
    missing = [f for f in ("line1", "city") if not address.get(f)]
    if missing:
        outcomes.append(_fail(ADDRESS, f"missing {', '.join(missing)}"))
    elif not (address.get("name") or order.customer_name):
        outcomes.append(_fail(ADDRESS, "no recipient name"))
    else:
        outcomes.append(_ok(ADDRESS, f"complete for {address['country']}"))

    if order.customer_email or order.customer_phone:
        outcomes.append(_ok(CONTACT, "email or phone present and valid"))
    else:
        outcomes.append(_fail(CONTACT, "no way to reach the customer"))

    threshold = (policy.high_value_minor or {}).get(order.currency)
    if threshold is not None and order.total_minor >= threshold:
        outcomes.append(
            _fail(
                HIGH_VALUE,
                f"total {money.format_minor(order.total_minor, order.currency)} is at or above "
                f"{money.format_minor(threshold, order.currency)}",
            )
        )
    else:
        outcomes.append(_ok(HIGH_VALUE, "below the high-value threshold"))

    billing = order.billing_address
    if billing and billing["country"] != address["country"]:
        outcomes.append(
            _fail(
                COUNTRY_MISMATCH,
                f"billing country {billing['country']} differs from shipping {address['country']}",
            )
        )
    else:
        outcomes.append(_ok(COUNTRY_MISMATCH, "billing and shipping countries agree"))

    if duplicate_numbers:
        listed = ", ".join(f"#{n}" for n in duplicate_numbers[:5])
        outcomes.append(
            _fail(
                DUPLICATE,
                f"same customer and lines as {listed} within {policy.duplicate_window_minutes} minutes",
            )
        )
    else:
        outcomes.append(_ok(DUPLICATE, "no similar recent order"))
    return outcomes
