"""The CSV order format: columns, the header check, grouping rows into orders, and
turning each group into an `OrderCreate` checked by the same intake rules as the API.

Pure (no I/O): the importer feeds records in and gets clean orders or problems out,
each problem naming the row as numbered in the file (header = row 1) and the column.
docs/csv-import.md describes the format for people.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import ValidationError

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.core.validation import has_control_characters
from orderdesk.imports.reader import REPLACEMENT, Record
from orderdesk.orders.intake import CleanOrder, clean_order
from orderdesk.orders.models import PaymentStatus, Priority
from orderdesk.orders.schemas import MAX_LINES, OrderCreate

# Repeated on every row of an order; read from the order's first row.
ORDER_COLUMNS = (
    "external_ref",
    "customer_name",
    "customer_email",
    "customer_phone",
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_region",
    "ship_postal_code",
    "ship_country",
    "bill_name",
    "bill_company",
    "bill_line1",
    "bill_line2",
    "bill_city",
    "bill_region",
    "bill_postal_code",
    "bill_country",
    "currency",
    "payment_status",
    "priority",
    "tags",
    "notes",
    "ship_by",
    "deliver_by",
    "shipping_minor",
    "discount_minor",
    "total_minor",
)
# One line item per row.
LINE_COLUMNS = ("sku", "description", "quantity", "unit_price_minor", "tax_minor")
KNOWN_COLUMNS = frozenset(ORDER_COLUMNS + LINE_COLUMNS)
REQUIRED_COLUMNS = (
    "external_ref",
    "customer_name",
    "ship_line1",
    "ship_city",
    "ship_country",
    "currency",
    "sku",
    "quantity",
    "unit_price_minor",
)
# At least one of these: an order needs a way to reach the customer.
CONTACT_COLUMNS = ("customer_email", "customer_phone")
TAG_SEPARATOR = ";"
# Errors are stored with the reference; one from a broken row may be anything.
MAX_REF_CHARS = 100

_ADDRESS_FIELDS = {
    "ship_name": "name",
    "ship_company": "company",
    "ship_line1": "line1",
    "ship_line2": "line2",
    "ship_city": "city",
    "ship_region": "region",
    "ship_postal_code": "postal_code",
    "ship_country": "country",
}
# The billing address is optional as a whole; once any of its cells is filled in, it
# is an address like the shipping one (line1, city and country required).
_BILLING_FIELDS = {f"bill_{key}": key for key in _ADDRESS_FIELDS.values()}
_CUSTOMER_FIELDS = {"customer_name": "name", "customer_email": "email", "customer_phone": "phone"}
_PLAIN_ORDER_FIELDS = (
    "currency",
    "payment_status",
    "priority",
    "notes",
    "ship_by",
    "deliver_by",
    "shipping_minor",
    "discount_minor",
    "total_minor",
)
_LINE_FIELD = re.compile(r"lines\[(\d+)\]\.(\w+)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a row was not imported (or, at row 1, a note about the header)."""

    row: int
    column: str | None
    message: str
    order_ref: str | None = None


class HeaderRefused(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def column_name(raw: str) -> str:
    """Header cells match case-insensitively; spaces and hyphens count as underscores."""
    return "_".join(raw.strip().lower().replace("-", " ").split())


def header_score(fields: list[str]) -> int:
    """How many known columns a header split this way names (picks the delimiter)."""
    return sum(1 for f in fields if column_name(f) in KNOWN_COLUMNS)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each known column sits in a row, from the header."""

    positions: dict[str, int]
    width: int
    warnings: tuple[Problem, ...]
    # (column, position) of the order columns the file has.
    order_positions: tuple[tuple[str, int], ...] = ()


def read_header(fields: list[str], *, delimiter: str) -> Layout:
    """Check the header row. Raises HeaderRefused for missing or repeated columns.

    Unknown columns are ignored with a warning (row 1 of the report), so exports
    from other systems import as they are, and a misspelt optional column is
    pointed out rather than silently lost.
    """
    positions: dict[str, int] = {}
    warnings: list[Problem] = []
    for index, raw in enumerate(fields):
        name = column_name(raw)
        shown = _printable(raw.strip())[:MAX_REF_CHARS]
        if name in KNOWN_COLUMNS:
            if name in positions:
                raise HeaderRefused(
                    f"Column {name} appears twice (columns {positions[name] + 1} and {index + 1})"
                )
            positions[name] = index
        elif not name:
            if index < len(fields) - 1 or len(fields) == 1:
                warnings.append(Problem(1, None, f"column {index + 1} has no name; its values are ignored"))
        else:
            close = difflib.get_close_matches(name, sorted(KNOWN_COLUMNS), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close and close[0] not in positions else ""
            warnings.append(Problem(1, shown, f"unknown column, its values are ignored{hint}"))
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if not any(name in positions for name in CONTACT_COLUMNS):
        missing.append(" or ".join(CONTACT_COLUMNS))
    if missing:
        found = len(fields)
        hint = ""
        if found == 1:
            hint = (
                f" The header has a single column when split by {_delimiter_word(delimiter)}: "
                "is the delimiter a comma, a semicolon or a tab?"
            )
        raise HeaderRefused(f"Missing required columns: {', '.join(missing)}.{hint}")
    return Layout(
        positions=positions,
        width=len(fields),
        warnings=tuple(warnings),
        order_positions=tuple((c, positions[c]) for c in ORDER_COLUMNS if c in positions),
    )


def _delimiter_word(delimiter: str) -> str:
    return {",": "commas", ";": "semicolons", "\t": "tabs"}.get(delimiter, repr(delimiter))


def _printable(value: str) -> str:
    return value if value.isprintable() else repr(value)


def safe_ref(value: str | None) -> str | None:
    """A reference fit to store next to an error: printable and at most 100 characters."""
    if not value:
        return None
    return _printable(value)[:MAX_REF_CHARS]


# ---------------------------------------------------------------- grouping


@dataclass(slots=True)
class OrderRows:
    """The contiguous rows of one order, and problems already found in them."""

    ref: str
    rows: list[Record]
    problems: list[Problem] = field(default_factory=list)
    # Rows past the most an order may have: counted, not kept (memory stays flat).
    dropped_rows: int = 0

    @property
    def first_row(self) -> int:
        return self.rows[0].number

    @property
    def row_count(self) -> int:
        return len(self.rows) + self.dropped_rows


class OrderGrouper:
    """Groups rows into orders by `external_ref`; an order's rows must be next to each other.

    Contiguity keeps memory flat: an order is complete as soon as another starts.
    Remembering every reference seen (about 100 bytes each) is what it costs to
    catch an order whose rows are split; the later rows are refused, never merged
    into or added as a second order.

    `feed` returns finished orders and rows that belong to no order; `finish`
    returns what is left at the end of the file.
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._ref_at = layout.positions["external_ref"]
        self._current: OrderRows | None = None
        self._seen: set[str] = set()
        # Rows that cannot name their order (unreadable, no reference). They reject the
        # order around them when the rows before and after belong to the same order.
        self._orphans: list[Problem] = []

    def feed(self, record: Record) -> list[OrderRows | Problem]:
        out: list[OrderRows | Problem] = []
        if record.fields is None:
            self._orphans.append(Problem(record.number, None, f"Row {record.error}"))
            return out
        fields = record.fields
        if not any(value.strip() for value in fields):
            return out  # a blank row separates nothing and belongs to no order
        ref = fields[self._ref_at].strip() if len(fields) > self._ref_at else ""
        if not ref:
            self._orphans.append(
                Problem(record.number, "external_ref", "is required: it groups rows into orders")
            )
            return out
        current = self._current
        if current is not None and ref == current.ref:
            if self._orphans:
                current.problems.extend(self._orphaned(ref))
            if len(current.rows) < MAX_LINES:
                current.rows.append(record)
            else:
                if not current.dropped_rows:
                    current.problems.append(
                        Problem(
                            record.number,
                            None,
                            f"more than {MAX_LINES} rows: an order can have at most {MAX_LINES} lines",
                            safe_ref(ref),
                        )
                    )
                current.dropped_rows += 1
            return out
        out.extend(self._close_current())
        group = OrderRows(ref=ref, rows=[record])
        if ref in self._seen:
            group.problems.append(
                Problem(
                    record.number,
                    "external_ref",
                    f"order {safe_ref(ref)} already appeared earlier in the file: all rows of an order "
                    "must be next to each other",
                    safe_ref(ref),
                )
            )
        self._seen.add(ref)
        self._current = group
        return out

    def _orphaned(self, ref: str) -> list[Problem]:
        problems = [
            Problem(
                p.row,
                p.column,
                p.message + f" (so order {safe_ref(ref)} around it was not imported)",
                safe_ref(ref),
            )
            for p in self._orphans
        ]
        self._orphans = []
        return problems

    def _close_current(self) -> list[OrderRows | Problem]:
        out: list[OrderRows | Problem] = []
        if self._current is not None:
            out.append(self._current)
            self._current = None
        out.extend(self._orphans)
        self._orphans = []
        return out

    def finish(self) -> list[OrderRows | Problem]:
        return self._close_current()

    def stop(self) -> list[OrderRows | Problem]:
        """The end, when the file could not be read to its end: the order being read may
        be missing rows, so it is refused rather than imported in part."""
        current = self._current
        if current is not None:
            current.problems.append(
                Problem(
                    current.rows[-1].number,
                    None,
                    "reading stopped after this row; the order's remaining rows may be missing, so it "
                    "was not imported",
                    safe_ref(current.ref),
                )
            )
        return self._close_current()


# ---------------------------------------------------------------- one order


def _problem_at(group: OrderRows, line_index: int | None, column: str | None, message: str) -> Problem:
    row = group.rows[line_index].number if line_index is not None and line_index < len(group.rows) else None
    return Problem(row or group.first_row, column, message, safe_ref(group.ref))


def _text_cell(fields: list[str], position: int | None) -> str:
    if position is None or position >= len(fields):
        return ""
    return fields[position].strip()


def parse_order(
    group: OrderRows, layout: Layout, *, tenant_id: UUID, encoding: str
) -> CleanOrder | list[Problem]:
    """The group as a clean order, or every problem found in its rows.

    Row-shape problems (field counts, values that differ between an order's rows,
    undecodable bytes) come first; then the API's schema; then `clean_order`.
    Each stage runs only when the previous found nothing, as in the API.
    """
    problems = list(group.problems)
    first = group.rows[0].fields
    for record in group.rows:
        fields = record.fields
        if len(fields) < layout.width or (
            len(fields) > layout.width and any(v.strip() for v in fields[layout.width :])
        ):
            problems.append(
                _row_problem(
                    group, record, None, f"has {len(fields)} fields but the header has {layout.width}"
                )
            )
            continue
        if any(REPLACEMENT in value for value in fields):
            problems += [
                _row_problem(
                    group,
                    record,
                    column,
                    f"contains bytes that are not valid {encoding}; save the file as UTF-8 "
                    "or name its encoding",
                )
                for column, position in layout.positions.items()
                if REPLACEMENT in fields[position]
            ]
        if fields is first:
            continue
        for column, position in layout.order_positions:
            value = fields[position]
            if value == first[position] or not (value := value.strip()):
                continue  # repeated, or left empty: both fine
            if value != (expected := first[position].strip()):
                problems.append(
                    _row_problem(
                        group,
                        record,
                        column,
                        f"{_short(value)} differs from {_short(expected)} on the order's first row "
                        f"(row {group.first_row}); leave it empty or repeat it",
                    )
                )
    if problems:
        return problems

    data = _order_data(group, layout, tenant_id)
    try:
        order = OrderCreate.model_validate(data)
    except ValidationError as exc:
        return [_schema_problem(group, error) for error in exc.errors()]
    try:
        return clean_order(order)
    except ValidationFailed as exc:
        return [_rule_problem(group, error) for error in exc.errors]


def _row_problem(group: OrderRows, record: Record, column: str | None, message: str) -> Problem:
    return Problem(record.number, column, message, safe_ref(group.ref))


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _order_data(group: OrderRows, layout: Layout, tenant_id: UUID) -> dict:
    """The API's JSON shape, from the order's first row and every row's line.

    Empty cells are left out, so the schema's defaults and "is required" apply
    exactly as to a JSON body without that key.
    """
    positions = layout.positions
    first = group.rows[0].fields

    def cells(names: dict[str, str]) -> dict[str, str]:
        found = {}
        for column, key in names.items():
            value = _text_cell(first, positions.get(column))
            if value:
                found[key] = value
        return found

    data: dict = {
        "tenant_id": tenant_id,
        "external_ref": group.ref,
        "customer": cells(_CUSTOMER_FIELDS),
        "shipping_address": cells(_ADDRESS_FIELDS),
    }
    if billing := cells(_BILLING_FIELDS):
        data["billing_address"] = billing
    for column in _PLAIN_ORDER_FIELDS:
        value = _text_cell(first, positions.get(column))
        if value:
            data[column] = value.lower() if column in ("payment_status", "priority") else value
    tags = _text_cell(first, positions.get("tags"))
    if tags:
        data["tags"] = [t.strip() for t in tags.split(TAG_SEPARATOR) if t.strip()]
    lines = []
    for record in group.rows:
        line = {}
        for column in LINE_COLUMNS:
            value = _text_cell(record.fields, positions.get(column))
            if value:
                line[column] = value
        lines.append(line)
    data["lines"] = lines
    return data


_SCHEMA_SECTIONS = {"customer": "customer_", "shipping_address": "ship_", "billing_address": "bill_"}
_CHOICES = {
    "payment_status": ", ".join(s.value for s in PaymentStatus),
    "priority": ", ".join(p.value for p in Priority),
}


def _schema_problem(group: OrderRows, error: dict) -> Problem:
    loc = error["loc"]
    line_index = None
    if loc[0] == "lines" and len(loc) >= 3:
        line_index, column = int(loc[1]), str(loc[2])
    elif loc[0] == "lines":
        column = None
    elif loc[0] in _SCHEMA_SECTIONS and len(loc) >= 2:
        column = _SCHEMA_SECTIONS[loc[0]] + str(loc[1])
    else:
        column = str(loc[0])
    return _problem_at(group, line_index, column, _schema_message(column, error))


def _schema_message(column: str | None, error: dict) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    shown = _short(value) if isinstance(value, str) else None
    if kind == "missing" and column in _BILLING_FIELDS:
        return "is required when the order has a billing address (any bill_ column filled in)"
    if kind == "missing":
        return "is required"
    if kind in ("int_parsing", "int_from_float"):
        unit = " of minor units (e.g. 1999 for 19.99)" if column and column.endswith("_minor") else ""
        return f"{shown} is not a whole number{unit}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "enum":
        return f"{shown} must be one of: {_CHOICES.get(column or '', ctx.get('expected'))}"
    if kind.startswith("datetime"):
        return f"{shown} is not a date and time (ISO 8601 with a zone, e.g. 2026-12-01T17:00:00Z)"
    if kind == "too_long" and column == "tags":
        return f"an order can have at most {ctx.get('max_length')} tags"
    if kind == "too_long" and column is None:
        return f"an order can have at most {MAX_LINES} lines"
    return error["msg"]


def _rule_problem(group: OrderRows, error: FieldError) -> Problem:
    name = error.field
    if match := _LINE_FIELD.fullmatch(name):
        return _problem_at(group, int(match.group(1)), match.group(2), error.message)
    section, _, key = name.partition(".")
    if section in _SCHEMA_SECTIONS and key:
        return _problem_at(group, None, _SCHEMA_SECTIONS[section] + key, error.message)
    if name == "customer":
        return _problem_at(group, None, "customer_email", error.message)
    if name == "lines":
        return _problem_at(group, None, None, error.message)
    return _problem_at(group, None, name, error.message)


def catalog_problems(group: OrderRows, errors: tuple[FieldError, ...]) -> list[Problem]:
    """Problems for errors found at capture (unknown or inactive SKUs)."""
    return [_rule_problem(group, error) for error in errors]


def iter_problem_rows(problems: list[Problem]) -> Iterator[tuple[int, str | None, str | None, str]]:
    for p in problems:
        message = p.message if not has_control_characters(p.message) else repr(p.message)
        yield p.row, safe_ref(p.order_ref), p.column, message[:1000]
