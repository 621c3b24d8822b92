"""Shopify's `orders/create` webhook: its signature, and what its payload means as an `OrderCreate`.

Pure (no I/O): `services.py` authenticates deliveries and captures orders; this
module reads Shopify's JSON and names Shopify's own fields in every error, so a
shop owner can find the problem in their Shopify admin. docs/shopify.md describes
the mapping field by field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from typing import Annotated, Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orderdesk.core import geo, money
from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.core.validation import Collector
from orderdesk.orders.models import PaymentStatus
from orderdesk.orders.schemas import MAX_LINES, OrderCreate

ORDERS_CREATE = "orders/create"
INVALID_ORDER = "The Shopify order could not be taken over: see errors (Shopify's field names)"

# Shopify's financial_status -> ours. Lossy ones are also written to the order's notes.
PAYMENT_STATUS_OF = {
    "pending": PaymentStatus.PENDING,  # no money yet (e.g. bank transfer, cash on delivery)
    "authorized": PaymentStatus.AUTHORIZED,  # card authorised, not captured
    "partially_paid": PaymentStatus.PENDING,  # part of the money is missing: an agent must look
    "paid": PaymentStatus.PAID,
    "partially_refunded": PaymentStatus.PAID,  # captured; the part refunded is noted
    "refunded": PaymentStatus.REFUNDED,
    "voided": PaymentStatus.FAILED,  # the authorisation was cancelled: no money will come
    "expired": PaymentStatus.FAILED,  # the authorisation lapsed before capture
}
LOSSY_PAYMENT_STATUSES = frozenset({"partially_paid", "partially_refunded", "voided", "expired"})

MAX_TAGS = 20  # OrderCreate keeps at most 20 tags; Shopify allows 250
MAX_NOTES = 5000
MAX_DESCRIPTION = 300
# Anything at or above this many major units cannot be an order amount (see money.MAX_AMOUNT_MINOR).
_AMOUNT_CEILING = Decimal(10) ** 16


# ---------------------------------------------------------------- signature


def sign(secret: str, body: bytes) -> str:
    """What Shopify sends in X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def signature_matches(secret: str, body: bytes, signature: str | None) -> bool:
    """True when `signature` is the body's HMAC under `secret`, compared in constant time."""
    if not signature:
        return False
    try:
        provided = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(expected, provided)


# ---------------------------------------------------------------- the payload, as far as it is read


class _Payload(BaseModel):
    # Shopify adds fields with every API version; only the ones mapped here are read.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


# Shopify sends amounts as decimal strings ("19.90"); JSON numbers are read as Decimal too.
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class ShopifyTaxLine(_Payload):
    title: str | None = None
    price: Amount


class ShopifyLineItem(_Payload):
    id: int | None = None
    variant_id: int | None = None
    sku: str | None = None
    title: str | None = None
    variant_title: str | None = None
    quantity: int = Field(gt=0)
    price: Amount
    tax_lines: list[ShopifyTaxLine] = Field(default_factory=list)


class ShopifyShippingLine(_Payload):
    title: str | None = None
    price: Amount
    tax_lines: list[ShopifyTaxLine] = Field(default_factory=list)


class ShopifyAddress(_Payload):
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    phone: str | None = None


class ShopifyCustomer(_Payload):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class ShopifyMoney(_Payload):
    amount: Amount
    currency_code: str


class ShopifyMoneySet(_Payload):
    shop_money: ShopifyMoney | None = None
    presentment_money: ShopifyMoney | None = None


class ShopifyOrder(_Payload):
    id: int
    name: str | None = None
    email: str | None = None
    contact_email: str | None = None
    phone: str | None = None
    customer: ShopifyCustomer | None = None
    shipping_address: ShopifyAddress | None = None
    billing_address: ShopifyAddress | None = None
    currency: str
    presentment_currency: str | None = None
    taxes_included: bool = False
    total_tax: Amount | None = None
    total_discounts: Amount = Decimal(0)
    total_price: Amount
    total_price_set: ShopifyMoneySet | None = None
    financial_status: str | None = None
    line_items: list[ShopifyLineItem] = Field(min_length=1, max_length=MAX_LINES)
    shipping_lines: list[ShopifyShippingLine] = Field(default_factory=list)
    tags: str | None = None
    note: str | None = None
    processed_at: dt.datetime | None = None
    test: bool = False


def _path(loc: tuple[Any, ...]) -> str:
    """("line_items", 0, "price") -> "line_items[0].price"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _errors_of(exc: ValidationError) -> list[FieldError]:
    return [FieldError(_path(error["loc"]), error["msg"]) for error in exc.errors()]


def parse_order(body: bytes) -> ShopifyOrder:
    """Read an orders/create body. Raises ValidationFailed naming Shopify's fields."""
    try:
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 or nested too deeply"
        raise ValidationFailed([FieldError("body", f"is not valid JSON ({reason})")], INVALID_ORDER) from None
    if not isinstance(document, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object (a Shopify order)")], INVALID_ORDER)
    try:
        return ShopifyOrder.model_validate(document)
    except ValidationError as exc:
        raise ValidationFailed(_errors_of(exc), INVALID_ORDER) from None


# ---------------------------------------------------------------- mapping


@dataclass(frozen=True, slots=True)
class MappedOrder:
    """An `OrderCreate` made from a Shopify order, and where each of its fields came from."""

    order: OrderCreate
    # OrderCreate field path -> the Shopify field it was read from, for error messages.
    sources: dict[str, str]

    def shopify_field(self, field: str) -> str:
        """`lines[2].unit_price_minor` -> `line_items[2].price`; unknown paths by their nearest parent."""
        return shopify_field(self.sources, field)

    def in_shopify_terms(self, exc: ValidationFailed) -> ValidationFailed:
        return ValidationFailed(
            [FieldError(self.shopify_field(e.field), e.message) for e in exc.errors], INVALID_ORDER
        )


def shopify_field(sources: dict[str, str], field: str) -> str:
    probe = field
    while probe not in sources:
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            return field
        probe = probe[:cut]
    return sources[probe] + field[len(probe) :]


def exact_minor(amount: Decimal, currency: str) -> int | None:
    """`amount` in the currency's minor units, or None when it has more decimals than the currency.

    "19.90" EUR -> 1990, "1500" or "1500.00" JPY -> 1500, "1500.5" JPY -> None. No float
    and no rounding anywhere: a value that is not exact is refused, never adjusted.
    """
    with localcontext() as context:
        context.prec = 60
        context.traps[Inexact] = True
        try:
            scaled = amount.scaleb(money.exponent(currency))
        except Inexact:
            return None
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def _joined(*parts: str | None, sep: str = " ") -> str:
    return sep.join(p for p in parts if p)


def _phone_is_usable(raw: str, country: str) -> bool:
    # The same rule intake applies: parseable, and a valid number for its region.
    try:
        parsed = phonenumbers.parse(raw, country if geo.is_country(country) else None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed)


class _Mapper:
    """One Shopify order's translation; collects every problem before giving up."""

    def __init__(self, order: ShopifyOrder, shop_domain: str) -> None:
        self.shopify = order
        self.shop_domain = shop_domain
        self.check = Collector()
        self.sources: dict[str, str] = {
            "external_ref": "id",
            "currency": "currency",
            "lines": "line_items",
            "shipping_minor": "shipping_lines",
            "discount_minor": "total_discounts",
            "total_minor": "total_price",
            "payment_status": "financial_status",
            "tags": "tags",
            "notes": "note",
            "customer": "email",
            "Idempotency-Key": "X-Shopify-Webhook-Id",
        }
        self.remarks: list[str] = []
        self.currency = order.currency.upper()

    def minor(self, amount: Decimal, field: str) -> int:
        if amount >= _AMOUNT_CEILING:
            self.check.add(field, "is larger than any order amount OrderDesk accepts")
            return 0
        value = exact_minor(amount, self.currency)
        if value is None:
            digits = money.exponent(self.currency)
            self.check.add(field, f"{amount} has more decimals than {self.currency} has ({digits})")
            return 0
        return value

    def address(self, ours: str, address: ShopifyAddress) -> dict[str, Any]:
        for our_field, their_field in (
            ("line1", "address1"),
            ("line2", "address2"),
            ("region", "province_code" if address.province_code else "province"),
            ("postal_code", "zip"),
            ("country", "country_code"),
        ):
            self.sources[f"{ours}.{our_field}"] = f"{ours}.{their_field}"
        return {
            "name": address.name or _joined(address.first_name, address.last_name) or None,
            "company": address.company or None,
            "line1": address.address1 or "",
            "line2": address.address2 or None,
            "city": address.city or "",
            "region": address.province_code or address.province or None,
            "postal_code": address.zip or None,
            "country": address.country_code or "",
        }

    def customer(self) -> dict[str, Any]:
        order = self.shopify
        customer = order.customer or ShopifyCustomer()
        shipping, billing = order.shipping_address, order.billing_address
        names = [
            (_joined(customer.first_name, customer.last_name), "customer.first_name"),
            (
                shipping and (shipping.name or _joined(shipping.first_name, shipping.last_name)),
                "shipping_address.name",
            ),
            (
                billing and (billing.name or _joined(billing.first_name, billing.last_name)),
                "billing_address.name",
            ),
        ]
        name, self.sources["customer.name"] = next(
            ((n, s) for n, s in names if n), ("", "customer.first_name")
        )
        emails = [
            (order.email, "email"),
            (order.contact_email, "contact_email"),
            (customer.email, "customer.email"),
        ]
        email, self.sources["customer.email"] = next(((e, s) for e, s in emails if e), (None, "email"))
        return {"name": name, "email": email, "phone": self.phone(email)}

    def phone(self, email: str | None) -> str | None:
        order = self.shopify
        region = ((order.shipping_address and order.shipping_address.country_code) or "").upper()
        candidates = [
            (order.phone, "phone"),
            (order.customer and order.customer.phone, "customer.phone"),
            (order.shipping_address and order.shipping_address.phone, "shipping_address.phone"),
            (order.billing_address and order.billing_address.phone, "billing_address.phone"),
        ]
        present = [(raw, source) for raw, source in candidates if raw]
        for raw, source in present:
            if _phone_is_usable(raw, region):
                self.sources["customer.phone"] = source
                return raw
        if not present:
            return None
        raw, source = present[0]
        if email:
            # Shopify takes free text as an address's phone; one unusable number must not lose an order.
            self.remarks.append(f"Phone {raw!r} from Shopify ({source}) is not a valid number; left out.")
            return None
        self.sources["customer.phone"] = source  # the only contact: intake will name it
        return raw

    def lines(self) -> list[dict[str, Any]]:
        lines = []
        for index, item in enumerate(self.shopify.line_items):
            ours, theirs = f"lines[{index}]", f"line_items[{index}]"
            self.sources[ours] = theirs
            self.sources[f"{ours}.description"] = f"{theirs}.title"
            self.sources[f"{ours}.unit_price_minor"] = f"{theirs}.price"
            self.sources[f"{ours}.tax_minor"] = f"{theirs}.tax_lines"
            if item.sku:
                sku, self.sources[f"{ours}.sku"] = item.sku, f"{theirs}.sku"
            elif item.variant_id is not None:
                sku, self.sources[f"{ours}.sku"] = (
                    f"shopify-variant-{item.variant_id}",
                    f"{theirs}.variant_id",
                )
            elif item.id is not None:  # a custom line item: no product behind it
                sku, self.sources[f"{ours}.sku"] = f"shopify-line-{item.id}", f"{theirs}.id"
            else:
                sku, self.sources[f"{ours}.sku"] = "", f"{theirs}.sku"  # intake says it is required
            description = _joined(item.title, item.variant_title, sep=" / ")
            if len(description) > MAX_DESCRIPTION:
                description = description[: MAX_DESCRIPTION - 1] + "…"
            tax = 0
            if not self.shopify.taxes_included:
                tax = sum(
                    self.minor(t.price, f"{theirs}.tax_lines[{j}].price")
                    for j, t in enumerate(item.tax_lines)
                )
            lines.append(
                {
                    "sku": sku,
                    "description": description or None,
                    "quantity": item.quantity,
                    "unit_price_minor": self.minor(item.price, f"{theirs}.price"),
                    "tax_minor": tax,
                }
            )
        return lines

    def shipping_minor(self) -> int:
        total = 0
        for index, line in enumerate(self.shopify.shipping_lines):
            total += self.minor(line.price, f"shipping_lines[{index}].price")
            if not self.shopify.taxes_included:
                # OrderDesk keeps tax per item line only, so shipping's own tax travels with shipping.
                total += sum(
                    self.minor(t.price, f"shipping_lines[{index}].tax_lines[{j}].price")
                    for j, t in enumerate(line.tax_lines)
                )
        return total

    def payment_status(self) -> PaymentStatus:
        raw = (self.shopify.financial_status or "").strip().lower()
        status = PAYMENT_STATUS_OF.get(raw)
        if status is None:
            shown = raw or "missing"
            self.remarks.append(
                f"Shopify payment status {shown!r} is not one OrderDesk knows; recorded as pending."
            )
            return PaymentStatus.PENDING
        if raw in LOSSY_PAYMENT_STATUSES:
            self.remarks.append(f"Shopify payment status: {raw} (recorded as {status.value}).")
        return status

    def tags(self) -> list[str]:
        tags = [t.strip() for t in (self.shopify.tags or "").split(",") if t.strip()]
        if self.shopify.test:
            tags.insert(0, "shopify-test")
        if len(tags) > MAX_TAGS:
            self.remarks.append(
                f"Shopify tags not kept (OrderDesk keeps {MAX_TAGS}): {', '.join(tags[MAX_TAGS:])}."
            )
        return tags[:MAX_TAGS]

    def money_remarks(self) -> None:
        order = self.shopify
        if order.taxes_included:
            included = order.total_tax
            if included is None:
                parts = [t.price for i in order.line_items for t in i.tax_lines]
                parts += [t.price for s in order.shipping_lines for t in s.tax_lines]
                included = sum(parts, Decimal(0))
            if included:
                self.remarks.append(f"Prices include tax: {included} {self.currency}.")
        presentment = (order.presentment_currency or "").upper()
        if presentment and presentment != self.currency:
            paid = order.total_price_set and order.total_price_set.presentment_money
            amount = f"{paid.amount} {paid.currency_code}" if paid else presentment
            self.remarks.append(
                f"The customer saw and paid {amount}; amounts here are in the shop's {self.currency}."
            )

    def notes(self) -> str | None:
        order = self.shopify
        placed = ""
        if order.processed_at is not None:
            if order.processed_at.tzinfo is None:
                self.check.add("processed_at", "needs a time zone offset")
            else:
                placed = (
                    f", placed {order.processed_at.astimezone(dt.UTC).isoformat().replace('+00:00', 'Z')}"
                )
        header = f"Shopify order {order.name or order.id} ({self.shop_domain}){placed}."
        if order.test:
            header += " Test order (Shopify's test gateway)."
        generated = "\n".join([header, *self.remarks])
        customer_note = (order.note or "").strip()
        if not customer_note:
            return generated
        room = MAX_NOTES - len(generated) - len("\n\nNote: ")
        if len(customer_note) > room:
            customer_note = customer_note[: max(room - 1, 0)] + "…"
        return f"{generated}\n\nNote: {customer_note}"

    def build(self) -> MappedOrder:
        order = self.shopify
        if not money.is_currency(self.currency):
            raise ValidationFailed(
                [FieldError("currency", f"{order.currency!r} is not an ISO 4217 currency code")],
                INVALID_ORDER,
            )
        if order.shipping_address is None:
            self.check.add("shipping_address", "is required: OrderDesk takes over orders that ship")
        data: dict[str, Any] = {
            "external_ref": f"shopify:{order.id}",
            "customer": self.customer(),
            "shipping_address": self.address("shipping_address", order.shipping_address or ShopifyAddress()),
            "billing_address": self.address("billing_address", order.billing_address)
            if order.billing_address
            else None,
            "currency": self.currency,
            "lines": self.lines(),
            "shipping_minor": self.shipping_minor(),
            "discount_minor": self.minor(order.total_discounts, "total_discounts"),
            "total_minor": self.minor(order.total_price, "total_price"),
            "payment_status": self.payment_status(),
            "tags": self.tags(),
        }
        self.money_remarks()
        data["notes"] = self.notes()
        self.check.raise_if_any()  # already in Shopify's terms
        try:
            created = OrderCreate.model_validate(data)
        except ValidationError as exc:
            errors = [FieldError(shopify_field(self.sources, e.field), e.message) for e in _errors_of(exc)]
            raise ValidationFailed(errors, INVALID_ORDER) from None
        return MappedOrder(order=created, sources=dict(self.sources))


def to_order_create(order: ShopifyOrder, shop_domain: str) -> MappedOrder:
    """Map a Shopify order to an `OrderCreate` (see docs/shopify.md).

    Amounts are in the shop's currency, converted exactly with the currency's own
    exponent. Raises ValidationFailed naming Shopify's fields. Rules every order
    must meet (addresses, totals, catalog) are applied later by intake; use
    `MappedOrder.in_shopify_terms` on what it raises.
    """
    return _Mapper(order, shop_domain).build()
