"""CSV cells that a spreadsheet will not run as formulas.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return, which
some spreadsheets skip before reading the formula) is executed by Excel, LibreOffice
and Google Sheets when the file is opened: `=HYPERLINK(...)` in a customer's name
becomes a link in an agent's spreadsheet. Every CSV we hand out passes its text
cells through `neutralise`, which prefixes such a cell with a single quote, the
convention spreadsheets show as "text".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """The value to write in a cell: text that would start a formula gets a leading quote.

    Numbers and None are returned as they are: they cannot carry a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_line(values: Iterable[object]) -> str:
    """One CSV record (RFC 4180 quoting, CRLF), every cell neutralised."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralise(v) for v in values])
    return buffer.getvalue()
