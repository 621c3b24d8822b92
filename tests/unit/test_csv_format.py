"""The CSV order format: header checks, grouping rows into orders, mapping to intake."""

from __future__ import annotations

import uuid

import pytest

from orderdesk.core import csv_safety
from orderdesk.imports import csv_format
from orderdesk.imports.csv_format import HeaderRefused, OrderGrouper, OrderRows, Problem, read_header
from orderdesk.imports.reader import Record
from orderdesk.orders.intake import CleanOrder
from orderdesk.orders.schemas import MAX_LINES

COLUMNS = [
    "external_ref", "customer_name", "customer_email", "ship_line1", "ship_city", "ship_postal_code",
    "ship_country", "currency", "tags", "sku", "quantity", "unit_price_minor", "tax_minor",
]  # fmt: skip
LAYOUT = read_header(COLUMNS, delimiter=",")
TENANT = uuid.uuid4()


def row(number: int, ref: str = "A-1", **values) -> Record:
    base = {
        "external_ref": ref, "customer_name": "Erika", "customer_email": "erika@example.com",
        "ship_line1": "Unter den Linden 1", "ship_city": "Berlin", "ship_postal_code": "10117",
        "ship_country": "de", "currency": "eur", "tags": "a; b ;;A", "sku": "TENT", "quantity": "2",
        "unit_price_minor": "1000", "tax_minor": "",
    }  # fmt: skip
    base.update(values)
    return Record(number, [base[c] for c in COLUMNS])


def test_header_names_are_matched_loosely_and_unknown_ones_warned():
    layout = read_header([" External Ref", *COLUMNS[1:], "Gift-Wrap", ""], delimiter=",")
    assert layout.positions["external_ref"] == 0 and layout.width == len(COLUMNS) + 2
    assert layout.warnings == (Problem(1, "Gift-Wrap", "unknown column, its values are ignored"),)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([c for c in COLUMNS if c not in ("sku", "currency")], "Missing required columns: currency, sku."),
        ([c for c in COLUMNS if c != "customer_email"], "customer_email or customer_phone"),
        ([*COLUMNS, "SKU"], "Column sku appears twice (columns 10 and 14)"),
        ([";".join(COLUMNS)], "is the delimiter a comma, a semicolon or a tab?"),
    ],
)
def test_headers_that_cannot_work_are_refused(columns, message):
    with pytest.raises(
        HeaderRefused, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")
    ):
        read_header(columns, delimiter=",")


def feed_all(records: list[Record]) -> list:
    grouper = OrderGrouper(LAYOUT)
    out = [item for record in records for item in grouper.feed(record)]
    return out + grouper.finish()


def test_contiguous_rows_make_one_order_and_a_split_order_is_refused():
    out = feed_all([row(2, "A"), row(3, "A"), row(4, "B"), Record(5, []), row(6, "A")])
    assert [(o.ref, [r.number for r in o.rows], o.problems) for o in out[:2]] == [
        ("A", [2, 3], []),
        ("B", [4], []),
    ]
    [problem] = out[2].problems
    assert (problem.row, problem.column) == (6, "external_ref") and "already appeared" in problem.message


def test_rows_without_an_order_stand_alone_unless_an_order_surrounds_them():
    out = feed_all(
        [row(2, "A"), row(3, ""), row(4, "B"), row(5, "B"), Record(6, None, "broken"), row(7, "B")]
    )
    assert isinstance(out[0], OrderRows) and out[0].problems == []
    assert out[1] == Problem(3, "external_ref", "is required: it groups rows into orders")
    order_b = out[2]
    assert order_b.ref == "B" and [p.row for p in order_b.problems] == [6]
    assert "so order B around it was not imported" in order_b.problems[0].message


def test_an_order_past_the_line_limit_is_counted_not_kept():
    grouper = OrderGrouper(LAYOUT)
    for number in range(2, 2 + MAX_LINES + 300):
        assert grouper.feed(row(number, "BIG")) == []
    [group] = grouper.finish()
    assert len(group.rows) == MAX_LINES and group.row_count == MAX_LINES + 300
    [problem] = group.problems
    assert problem.row == MAX_LINES + 2 and "at most 500 lines" in problem.message
    assert isinstance(csv_format.parse_order(group, LAYOUT, tenant_id=TENANT, encoding="utf-8"), list)


def test_an_order_cut_off_by_a_read_stop_is_refused():
    grouper = OrderGrouper(LAYOUT)
    [done] = [*grouper.feed(row(2, "A")), *grouper.feed(row(3, "B"))]
    [cut] = grouper.stop()
    assert done.ref == "A" and done.problems == []
    assert cut.ref == "B" and cut.problems[0].row == 3 and "reading stopped" in cut.problems[0].message


def test_a_group_becomes_the_same_clean_order_as_the_api_would_make():
    group = OrderRows(
        "A-1", [row(2), row(3, sku="MAT", quantity="1", unit_price_minor="250", tax_minor="40")]
    )
    clean = csv_format.parse_order(group, LAYOUT, tenant_id=TENANT, encoding="utf-8")
    assert isinstance(clean, CleanOrder)
    assert clean.currency == "EUR" and clean.shipping_address["country"] == "DE"
    assert clean.tags == ("a", "b")
    assert [(line.sku, line.quantity, line.total_minor) for line in clean.lines] == [
        ("TENT", 2, 2000),
        ("MAT", 1, 290),
    ]
    assert clean.total_minor == 2290 and clean.source.tenant_id == TENANT


@pytest.mark.parametrize(
    ("values", "row_number", "column", "message"),
    [
        ({"quantity": "1.5"}, 3, "quantity", "'1.5' is not a whole number"),
        ({"quantity": "0"}, 3, "quantity", "must be greater than 0"),
        (
            {"unit_price_minor": "12,50"},
            3,
            "unit_price_minor",
            "'12,50' is not a whole number of minor units",
        ),
        ({"sku": ""}, 3, "sku", "is required"),
        ({"sku": "T\x00"}, 3, "sku", "must not contain control characters"),
        ({"customer_email": "nope"}, 3, "customer_email", "differs from"),
    ],
)
def test_problems_name_the_row_and_column(values, row_number, column, message):
    group = OrderRows("A-1", [row(2), row(3, **values)])
    [problem] = csv_format.parse_order(group, LAYOUT, tenant_id=TENANT, encoding="utf-8")
    assert (problem.row, problem.column, problem.order_ref) == (row_number, column, "A-1")
    assert message in problem.message


def test_order_problems_point_at_the_orders_first_row():
    group = OrderRows(
        "A-1", [row(2, currency="ZZZ", ship_postal_code="1"), row(3, currency="", ship_postal_code="")]
    )
    problems = csv_format.parse_order(group, LAYOUT, tenant_id=TENANT, encoding="utf-8")
    assert {(p.row, p.column) for p in problems} == {(2, "currency"), (2, "ship_postal_code")}


def test_too_many_empty_trailing_fields_are_fine_but_missing_ones_are_not():
    padded = Record(2, [*row(2).fields, "", " "])
    assert isinstance(csv_format.parse_order(OrderRows("A-1", [padded]), LAYOUT, tenant_id=TENANT,
                                             encoding="utf-8"), CleanOrder)  # fmt: skip
    short = Record(2, row(2).fields[:-2])
    [problem] = csv_format.parse_order(OrderRows("A-1", [short]), LAYOUT, tenant_id=TENANT, encoding="utf-8")
    assert problem.message == f"has {len(COLUMNS) - 2} fields but the header has {len(COLUMNS)}"


def test_stored_problem_rows_are_printable_and_bounded():
    [(row_number, ref, _, message)] = csv_format.iter_problem_rows(
        [Problem(4, "sku", "x" * 2000, "\x00" * 300)]
    )
    assert ref.startswith("'\\x00") and len(ref) == 100
    assert len(message) == 1000 and row_number == 4


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 1234", "'+49 30 1234"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        (7, 7),
        (None, None),
    ],
)
def test_csv_cells_that_would_be_formulas_are_neutralised(value, written):
    assert csv_safety.neutralise(value) == written


def test_csv_line_quotes_and_neutralises():
    assert csv_safety.csv_line([3, "=cmd|' /C calc'!A0", 'say "hi"', None]) == (
        '3,\'=cmd|\' /C calc\'!A0,"say ""hi""",\r\n'
    )


# ---------------------------------------------------------------- billing address

BILLING = ["bill_name", "bill_company", "bill_line1", "bill_line2", "bill_city", "bill_region",
           "bill_postal_code", "bill_country"]  # fmt: skip
BILLING_LAYOUT = read_header([*COLUMNS, *BILLING], delimiter=",")


def billed_row(number: int, **billing) -> Record:
    cells = {name: "" for name in BILLING} | billing
    return Record(number, [*row(number).fields, *(cells[name] for name in BILLING)])


def parse_billed(*records: Record):
    return csv_format.parse_order(
        OrderRows("A-1", list(records)), BILLING_LAYOUT, tenant_id=TENANT, encoding="utf-8"
    )


def test_billing_columns_are_known_and_optional():
    assert BILLING_LAYOUT.warnings == ()
    assert not set(BILLING) & set(csv_format.REQUIRED_COLUMNS)


def test_a_billing_address_is_read_like_the_shipping_one():
    clean = parse_billed(
        billed_row(2, bill_name="Acme GmbH Buchhaltung", bill_line1="Rue de Rivoli 5", bill_city="Paris",
                   bill_postal_code="75001", bill_country="fr"),
        billed_row(3),  # order columns may be left empty on an order's later rows
    )  # fmt: skip
    assert isinstance(clean, CleanOrder)
    assert clean.billing_address == {
        "name": "Acme GmbH Buchhaltung", "company": None, "line1": "Rue de Rivoli 5", "line2": None,
        "city": "Paris", "region": None, "postal_code": "75001", "country": "FR",
    }  # fmt: skip
    assert clean.shipping_address["country"] == "DE"


def test_no_billing_cells_means_no_billing_address():
    clean = parse_billed(billed_row(2))
    assert isinstance(clean, CleanOrder) and clean.billing_address is None


def test_a_partial_billing_address_names_each_missing_column():
    problems = parse_billed(billed_row(2, bill_name="Accounts", bill_postal_code="75001"))
    assert {(p.row, p.column) for p in problems} == {(2, "bill_line1"), (2, "bill_city"), (2, "bill_country")}
    assert {p.message for p in problems} == {
        "is required when the order has a billing address (any bill_ column filled in)"
    }


@pytest.mark.parametrize(
    ("billing", "column", "message"),
    [
        ({"bill_country": "XX"}, "bill_country", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ({"bill_postal_code": "ABC"}, "bill_postal_code", "is not a valid DE postal code"),
        ({"bill_country": "DEU"}, "bill_country", "must be at most 2 characters"),
        ({"bill_city": "Bell\x07"}, "bill_city", "must not contain control characters"),
    ],
)
def test_billing_values_follow_the_shipping_rules(billing, column, message):
    complete = {"bill_line1": "Hauptstr. 1", "bill_city": "Köln", "bill_postal_code": "50667",
                "bill_country": "DE"}  # fmt: skip
    [problem] = parse_billed(billed_row(2, **(complete | billing)))
    assert (problem.row, problem.column) == (2, column)
    assert message in problem.message


def test_billing_values_must_agree_between_an_orders_rows():
    problems = parse_billed(
        billed_row(2, bill_line1="Hauptstr. 1", bill_city="Köln", bill_country="DE"),
        billed_row(3, bill_country="AT"),
    )
    [problem] = problems
    assert (problem.row, problem.column) == (3, "bill_country") and "differs from 'DE'" in problem.message
