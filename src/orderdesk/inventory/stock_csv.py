"""Stock levels from a CSV file: one row per SKU, checked row by row.

Columns (header required, any order, names case-insensitive): `sku`, then either
`on_hand` (a count) or `delta` (units in or out) per row, and optionally
`low_stock_threshold`. Rows that cannot be read are reported with their line
number and never block the others; the readable rows go through the same stock
update as the API (ledger, idempotency, backorders).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.inventory.schemas import StockUpdateItem

MAX_ROWS = 1000
COLUMNS = {"sku", "on_hand", "delta", "low_stock_threshold"}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # line of the file, the header being line 1
    field: str
    message: str


def _int(raw: str, line: int, field: str, errors: list[RowError], *, minimum: int | None = 0) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        errors.append(RowError(line, field, f"{raw!r} is not a whole number"))
        return None
    if minimum is not None and value < minimum:
        errors.append(RowError(line, field, f"must be at least {minimum}"))
        return None
    return value


def parse(text: str) -> tuple[list[tuple[int, StockUpdateItem]], list[RowError]]:
    """(line, update) for every readable row, and an error for every other one.

    Raises ValidationFailed when the file itself is unusable (no header, no sku
    column, unknown columns, too many rows).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in next(reader, [])]
    if "sku" not in header:
        raise ValidationFailed([FieldError("file", "the first line must be a header naming at least `sku`")])
    unknown = sorted(set(header) - COLUMNS)
    if unknown:
        raise ValidationFailed([FieldError("file", f"unknown columns: {', '.join(unknown)}")])
    rows: list[tuple[int, StockUpdateItem]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            raise ValidationFailed([FieldError("file", f"at most {MAX_ROWS} rows per file")])
        cells = dict(zip(header, record, strict=False))
        sku = cells.get("sku", "").strip()
        before = len(errors)
        if not sku or len(sku) > 64 or not sku.isprintable():
            errors.append(RowError(line, "sku", "is required (1-64 printable characters)"))
        elif sku in seen:
            errors.append(RowError(line, "sku", f"{sku!r} is already on line {seen[sku]}"))
        on_hand = _int(cells.get("on_hand", ""), line, "on_hand", errors)
        delta = _int(cells.get("delta", ""), line, "delta", errors, minimum=None)
        threshold = _int(cells.get("low_stock_threshold", ""), line, "low_stock_threshold", errors)
        if len(errors) == before:
            if on_hand is not None and delta is not None:
                errors.append(RowError(line, "on_hand", "give either on_hand or delta, not both"))
            elif on_hand is None and delta is None and threshold is None:
                errors.append(RowError(line, "on_hand", "give on_hand, delta or low_stock_threshold"))
        if len(errors) == before:
            seen[sku] = line
            rows.append(
                (line, StockUpdateItem(sku=sku, on_hand=on_hand, delta=delta, low_stock_threshold=threshold))
            )
    return rows, errors
