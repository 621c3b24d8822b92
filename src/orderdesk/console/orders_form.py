"""The manual order entry form: form fields ↔ `OrderCreate`, and errors back onto fields.

Form field names are the API's field paths (`customer.email`, `lines[0].sku`), so
an error from intake validation lands on the input it is about. Amounts are
typed in major units ("19.90") and converted with the currency's exponent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from orderdesk.core import money
from orderdesk.core.errors import FieldError
from orderdesk.orders.schemas import OrderCreate

DEFAULT_LINES = 3
MAX_FORM_LINES = 50
_LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")
# API field (in error paths) → form field.
_AMOUNT_FIELDS = {"unit_price_minor": "unit_price", "tax_minor": "tax", "shipping_minor": "shipping"}
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country")


def form_field(api_path: str) -> str:
    """The form field an API error path is about."""
    match = _LINE_FIELD.match(api_path)
    if match:
        index, name = match.groups()
        return f"lines[{index}].{_AMOUNT_FIELDS.get(name, name)}"
    if api_path == "customer":
        return "customer.email"  # "needs an email or a phone": shown under the email
    return _AMOUNT_FIELDS.get(api_path, api_path)


def _minor(raw: str, currency: str) -> int | str:
    """'19.90' → 1990 for EUR; text that is not an amount is returned as is (refused later)."""
    text = raw.strip().replace(",", ".")
    if not text:
        return 0
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return raw
    digits = money.exponent(currency) if money.is_currency(currency) else 2
    scaled = amount * (10**digits)
    if scaled != scaled.to_integral_value():
        return raw
    return int(scaled)


def line_indexes(form: Any) -> list[int]:
    found = {int(m.group(1)) for key in form.keys() if (m := _LINE_FIELD.match(key))}
    return sorted(i for i in found if i < MAX_FORM_LINES)


def values(form: Any) -> dict[str, str]:
    """Every submitted field as text (to fill the form again)."""
    return {k: (v.strip() if isinstance(v, str) else "") for k, v in form.items() if not k.startswith("_")}


# Stand-ins for values pydantic refused, so that intake can still check every other field.
_STAND_INS = {
    "quantity": 1,
    "unit_price_minor": 0,
    "tax_minor": 0,
    "shipping_minor": 0,
    "tenant_id": None,
    "payment_status": "pending",
    "priority": "normal",
    "currency": "EUR",
    "country": "DE",
}


def build_order(form: Any, *, lenient: bool = False) -> tuple[OrderCreate | None, list[FieldError]]:
    """The order the form describes, or the errors that stop it from being one.

    Lines whose fields are all empty are ignored; at least one line is needed.
    With `lenient`, values that cannot even be read are replaced by stand-ins and
    the order is returned with the errors, so that the intake rules can still
    check every other field (inline validation shows all problems at once).
    """
    text = values(form)
    currency = text.get("currency", "").upper()
    errors: list[FieldError] = []
    lines = []
    line_map = []
    for index in line_indexes(form):
        fields = {
            name: text.get(f"lines[{index}].{name}", "")
            for name in ("sku", "description", "quantity", "unit_price", "tax")
        }
        if not any(fields.values()):
            continue
        entry: dict[str, Any] = {
            "sku": fields["sku"],
            "description": fields["description"] or None,
            "quantity": fields["quantity"] or "0",
            "unit_price_minor": _minor(fields["unit_price"], currency),
            "tax_minor": _minor(fields["tax"], currency),
        }
        for name in ("unit_price_minor", "tax_minor"):
            if isinstance(entry[name], str):
                errors.append(
                    FieldError(f"lines[{index}].{_AMOUNT_FIELDS[name]}", "is not an amount like 19.90")
                )
                entry[name] = 0
        line_map.append(index)
        lines.append(entry)
    if not lines:
        errors.append(FieldError("lines[0].sku", "add at least one line"))
    address = {name: text.get(f"shipping_address.{name}", "") or None for name in ADDRESS_FIELDS}
    address["line1"] = address["line1"] or ""
    address["city"] = address["city"] or ""
    address["country"] = address["country"] or ""
    shipping = _minor(text.get("shipping", ""), currency)
    if isinstance(shipping, str):
        errors.append(FieldError("shipping", "is not an amount like 4.95"))
        shipping = 0
    body = {
        "tenant_id": text.get("tenant_id") or None,
        "external_ref": text.get("external_ref") or None,
        "customer": {
            "name": text.get("customer.name", ""),
            "email": text.get("customer.email") or None,
            "phone": text.get("customer.phone") or None,
        },
        "shipping_address": address,
        "currency": currency,
        "lines": lines,
        "shipping_minor": shipping,
        "payment_status": text.get("payment_status") or "pending",
        "priority": text.get("priority") or "normal",
        "notes": text.get("notes") or None,
    }
    for _ in range(3):
        try:
            order = OrderCreate.model_validate(body)
        except ValidationError as exc:
            patched = False
            for problem in exc.errors():
                errors.append(FieldError(_pydantic_field(problem["loc"], line_map), _message(problem)))
                patched = _stand_in(body, problem["loc"]) or patched
            if not (lenient and patched):
                return None, _unique(errors)
            continue
        return (order if not errors or lenient else None), _unique(errors)
    return None, _unique(errors)


def _stand_in(body: dict, loc: tuple) -> bool:
    """Replace the value at `loc` by its stand-in; False when there is none."""
    if not loc or loc[-1] not in _STAND_INS:
        return False
    target: Any = body
    for part in loc[:-1]:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return False
    if not isinstance(target, dict):
        return False
    target[loc[-1]] = _STAND_INS[loc[-1]]
    return True


def _unique(errors: list[FieldError]) -> list[FieldError]:
    """One error per field: the first found."""
    seen: dict[str, FieldError] = {}
    for error in errors:
        seen.setdefault(error.field, error)
    return list(seen.values())


def _pydantic_field(loc: tuple, line_map: list[int]) -> str:
    parts = list(loc)
    if parts and parts[0] == "lines" and len(parts) >= 3 and isinstance(parts[1], int):
        index = line_map[parts[1]] if parts[1] < len(line_map) else parts[1]
        return form_field(f"lines[{index}].{parts[2]}")
    if parts and parts[0] == "lines":
        return "lines[0].sku"
    return form_field(".".join(str(p) for p in parts))


def _message(problem: dict) -> str:
    kind = problem.get("type", "")
    if kind == "missing":
        return "is required"
    if kind in ("int_parsing", "int_type"):
        return "must be a whole number"
    if kind == "greater_than":
        return "must be more than 0"
    if kind in ("string_too_short", "too_short"):
        return "is required" if problem.get("input") in ("", None) else problem.get("msg", "is too short")
    if kind == "enum":
        return "choose one from the list"
    if kind == "uuid_parsing":
        return "choose a client"
    return str(problem.get("msg", "is not valid")).removeprefix("Value error, ")


def remap(errors: list[FieldError], line_map: list[int] | None = None) -> list[FieldError]:
    """Intake errors (API paths, lines counted among the non-empty ones) onto form fields."""
    result = []
    for error in errors:
        path = error.field
        match = _LINE_FIELD.match(path)
        if match and line_map is not None:
            index = int(match.group(1))
            path = f"lines[{line_map[index] if index < len(line_map) else index}].{match.group(2)}"
        result.append(FieldError(form_field(path), error.message))
    return result


def non_empty_line_indexes(form: Any) -> list[int]:
    text = values(form)
    return [
        i
        for i in line_indexes(form)
        if any(text.get(f"lines[{i}].{n}") for n in ("sku", "description", "quantity", "unit_price", "tax"))
    ]
