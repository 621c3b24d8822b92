"""Bulk CSV import of orders: the API flow, the rules shared with the API, encodings and
delimiters, the error report, the console page, and memory while a large file streams."""

from __future__ import annotations

import asyncio
import csv
import ctypes
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import World, make_tenant, session_csrf, sign_in
from tests.integration.test_orders_api import bearer, order_body

COLUMNS = [
    "external_ref", "customer_name", "customer_email", "customer_phone", "ship_line1", "ship_line2",
    "ship_city", "ship_region", "ship_postal_code", "ship_country", "currency", "payment_status",
    "priority", "tags", "notes", "ship_by", "deliver_by", "shipping_minor", "discount_minor",
    "total_minor", "sku", "description", "quantity", "unit_price_minor", "tax_minor",
]  # fmt: skip


def order_rows(ref: str, lines: int = 2, **order) -> list[dict]:
    """An order as rows: order columns on every row, one line item per row."""
    base = {
        "external_ref": ref,
        "customer_name": "Erika Mustermann",
        "customer_email": f"{uuid.uuid4().hex[:8]}@example.com",
        "customer_phone": "030 1234567",
        "ship_line1": "Unter den Linden 1",
        "ship_city": "Berlin",
        "ship_postal_code": "10117",
        "ship_country": "DE",
        "currency": "EUR",
        "payment_status": "paid",
        "tags": "summer;VIP",
        "shipping_minor": "495",
        **order,
    }
    skus = [
        ("TENT-2P", "Tent", "2", "19900", "7562"),
        ("MAT-1", "", "1", "2500", ""),
        ("CUP", "", "3", "300", ""),
    ]
    return [
        {**base, "sku": s, "description": d, "quantity": q, "unit_price_minor": p, "tax_minor": t}
        for s, d, q, p, t in (skus * 3)[:lines]
    ]


def csv_text(rows: list[dict], *, delimiter: str = ",", columns: list[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns, delimiter=delimiter, lineterminator="\r\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def ref(prefix: str = "CSV") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def upload(
    client, key: str, body: bytes | str, filename: str = "orders.csv", **params
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return await client.post(
        "/api/v1/orders/imports/csv",
        params={"filename": filename, **params},
        content=content,
        headers={**bearer(key), "Content-Type": "text/csv"},
    )


async def errors_csv(client, key: str, import_id: str) -> list[list[str]]:
    response = await client.get(f"/api/v1/orders/imports/{import_id}/errors.csv", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


async def find_order(client, key: str, external_ref: str) -> dict | None:
    page = (await client.get(f"/api/v1/orders?q={external_ref}", headers=bearer(key))).json()
    matches = [o for o in page["items"] if o["external_ref"] == external_ref]
    if not matches:
        return None
    return (await client.get(f"/api/v1/orders/{matches[0]['id']}", headers=bearer(key))).json()


# ---------------------------------------------------------------- good and bad rows


async def test_good_orders_are_created_and_every_bad_row_is_reported(client, world: World):
    good_a, good_b = ref("GOOD"), ref("GOOD")
    bad = {kind: ref(kind.upper()) for kind in
           ("quantity", "currency", "postal", "missing", "fields", "control", "total")}  # fmt: skip
    rows = [
        *order_rows(good_a, lines=3, notes="Leave at the door,\nring twice"),
        *order_rows(bad["quantity"], lines=2),
        *order_rows(bad["currency"], lines=1, currency="XYZ"),
        *order_rows(bad["postal"], lines=1, ship_postal_code="ABC"),
        *order_rows(bad["missing"], lines=1, customer_name=""),
        *order_rows(bad["fields"], lines=2),
        *order_rows(bad["control"], lines=1, customer_name="Bell\x07Ringer"),
        *order_rows(bad["total"], lines=1, total_minor="1"),
        *order_rows(good_b, lines=1, payment_status="Authorized", priority="HIGH"),
    ]
    rows[4]["quantity"] = "two"  # second line of the bad-quantity order: file row 6
    text = csv_text(rows)
    # The bad-fields order's second row loses its last two fields (file row 11).
    lines = text.split("\r\n")
    lines[10] = lines[10].rsplit(",", 2)[0]
    text = "\r\n".join(lines)

    response = await upload(client, world.key_a, text)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["status"] == "done"
    assert report["encoding"] == "utf-8" and report["delimiter"] == ","
    assert report["rows_read"] == len(rows) == 13
    assert report["orders_created"] == 2
    assert report["orders_rejected"] == 7
    assert report["rows_rejected"] == 9
    assert report["orders_existing"] == 0
    assert report["bytes_read"] == report["bytes_total"] == len(text.encode())

    problems = {(p["row"], p["external_ref"], p["column"]): p["message"] for p in report["first_problems"]}
    assert problems == {
        (6, bad["quantity"], "quantity"): "'two' is not a whole number",
        (7, bad["currency"], "currency"): "'XYZ' is not an ISO 4217 currency code",
        (8, bad["postal"], "ship_postal_code"): "is not a valid DE postal code: expected 5 digits",
        (9, bad["missing"], "customer_name"): "is required",
        (11, bad["fields"], None): "has 23 fields but the header has 25",
        (12, bad["control"], "customer_name"): "must not contain control characters",
        (13, bad["total"], "total_minor"): (
            "is 1 but the lines, tax, shipping and discount add up to 47857 (478.57 EUR)"
        ),
    }
    assert report["problems"] == 7

    created = await find_order(client, world.key_a, good_a)
    assert created["channel"] == "csv" and created["status"] == "awaiting_verification"
    assert [(line["sku"], line["quantity"]) for line in created["lines"]] == [
        ("TENT-2P", 2),
        ("MAT-1", 1),
        ("CUP", 3),
    ]
    assert created["total_minor"] == 2 * 19900 + 2500 + 3 * 300 + 7562 + 495
    assert created["notes"] == "Leave at the door,\nring twice"
    assert created["tags"] == ["summer", "vip"] and created["customer_phone"] == "+49301234567"
    other = await find_order(client, world.key_a, good_b)
    assert other["payment_status"] == "authorized" and other["priority"] == "high"
    for external_ref in bad.values():
        assert await find_order(client, world.key_a, external_ref) is None  # all or nothing

    report_rows = await errors_csv(client, world.key_a, report["id"])
    assert report_rows[0] == ["row", "external_ref", "column", "message"]
    assert [r[0] for r in report_rows[1:]] == ["6", "7", "8", "9", "11", "12", "13"]


BILLING_COLUMNS = ["bill_name", "bill_company", "bill_line1", "bill_line2", "bill_city", "bill_region",
                   "bill_postal_code", "bill_country"]  # fmt: skip


async def test_billing_addresses_are_imported_and_checked_against_shipping(client, world: World):
    abroad, same, partial, bad_postal = ref("BILL"), ref("BILL"), ref("BILL"), ref("BILL")
    paris = {"bill_name": "Acme SARL, comptabilité", "bill_line1": "Rue de Rivoli 5", "bill_city": "Paris",
             "bill_postal_code": "75001", "bill_country": "FR"}  # fmt: skip
    berlin = {"bill_line1": "Friedrichstr. 10", "bill_city": "Berlin", "bill_postal_code": "10117",
              "bill_country": "DE"}  # fmt: skip
    rows = [
        *order_rows(abroad, lines=2, **paris),
        *order_rows(same, lines=1, **berlin),
        *order_rows(partial, lines=1, bill_name="Accounts", bill_postal_code="75001"),
        *order_rows(bad_postal, lines=1, **(berlin | {"bill_postal_code": "1011"})),
    ]
    report = (await upload(client, world.key_a, csv_text(rows, columns=[*COLUMNS, *BILLING_COLUMNS]))).json()
    assert (report["orders_created"], report["orders_rejected"], report["rows_rejected"]) == (2, 2, 2)
    required = "is required when the order has a billing address (any bill_ column filled in)"
    assert [(p["row"], p["external_ref"], p["column"], p["message"]) for p in report["first_problems"]] == [
        (5, partial, "bill_line1", required),
        (5, partial, "bill_city", required),
        (5, partial, "bill_country", required),
        (6, bad_postal, "bill_postal_code", "is not a valid DE postal code: expected 5 digits"),
    ]

    billed = await find_order(client, world.key_a, abroad)
    assert billed["billing_address"] == {
        "name": "Acme SARL, comptabilité", "company": None, "line1": "Rue de Rivoli 5", "line2": None,
        "city": "Paris", "region": None, "postal_code": "75001", "country": "FR",
    }  # fmt: skip
    checks = {c["check"]: c for c in billed["checks"]}
    assert checks["country_mismatch"]["result"] == "failed"
    assert checks["country_mismatch"]["detail"] == "billing country FR differs from shipping DE"
    assert billed["status"] == "awaiting_verification"
    agreeing = await find_order(client, world.key_a, same)
    assert agreeing["billing_address"]["city"] == "Berlin"
    assert {c["check"]: c["result"] for c in agreeing["checks"]}["country_mismatch"] == "passed"
    for refused in (partial, bad_postal):
        assert await find_order(client, world.key_a, refused) is None


async def test_the_error_report_cannot_run_formulas(client, world: World):
    evil = '=HYPERLINK("http://evil.example","x")'
    rows = [
        *order_rows(evil, lines=1, currency="XYZ"),
        *order_rows("+SUM(A1)", lines=1, ship_country="??"),
        *order_rows("@cmd", lines=1, customer_email="-not-an-email"),
    ]
    report = (await upload(client, world.key_a, csv_text(rows))).json()
    assert report["orders_rejected"] == 3
    cells = [cell for row in await errors_csv(client, world.key_a, report["id"]) for cell in row]
    assert f"'{evil}" in cells and "'+SUM(A1)" in cells and "'@cmd" in cells
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)


async def test_reimporting_the_same_file_creates_no_duplicates(client, world: World):
    refs = [ref("RE") for _ in range(3)]
    text = csv_text([row for r in refs for row in order_rows(r, lines=2)])
    first = (await upload(client, world.key_a, text)).json()
    again = (await upload(client, world.key_a, text)).json()
    assert first["orders_created"] == 3 and first["orders_existing"] == 0
    assert again["orders_created"] == 0 and again["orders_existing"] == 3
    assert again["rows_rejected"] == 0 and again["problems"] == 0
    for r in refs:
        page = (await client.get(f"/api/v1/orders?q={r}", headers=bearer(world.key_a))).json()
        assert len(page["items"]) == 1


async def test_an_imported_order_matches_the_same_order_sent_to_the_api(client, world: World):
    """Totals, normalisation, checks, status and timeline come from the same rules."""
    body = order_body()
    body["tags"] = ["Summer", "vip"]
    api = (await client.post("/api/v1/orders", json=body, headers=bearer(world.key_b))).json()
    imported_ref = ref("SAME")
    rows = order_rows(imported_ref, lines=2, customer_email=body["customer"]["email"], tags="Summer;vip")
    report = (await upload(client, world.key_b, csv_text(rows))).json()
    assert report["orders_created"] == 1
    imported = await find_order(client, world.key_b, imported_ref)

    different = {"id", "number", "external_ref", "channel", "created_at", "updated_at", "checks"}
    assert {k: v for k, v in imported.items() if k not in different} == {
        k: v for k, v in api.items() if k not in different
    }
    # The same customer and lines just before: the import suspects a duplicate of the API order.
    checks = {c["check"]: c for c in imported["checks"]}
    assert checks["duplicate_suspected"]["result"] == "failed"
    assert f"#{api['number']}" in checks["duplicate_suspected"]["detail"]
    events = (await client.get(f"/api/v1/orders/{imported['id']}/events", headers=bearer(world.key_b))).json()
    assert [(e["kind"], e["channel"]) for e in events] == [
        ("created", "csv"),
        ("verification_needed", "system"),
    ]
    assert events[0]["summary"] == f"Order #{imported['number']} captured via csv"
    assert events[1]["summary"] == "Waiting for an agent: duplicate_suspected"
    assert events[0]["changes"] == {"status": [None, "captured"], "total_minor": [None, api["total_minor"]]}


async def test_numbers_continue_the_tenant_sequence(client, world: World):
    tenant_key = world.key_b
    before = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(tenant_key))).json()[
        "number"
    ]
    refs = [ref("NUM") for _ in range(3)]
    await upload(client, tenant_key, csv_text([row for r in refs for row in order_rows(r, lines=1)]))
    after = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(tenant_key))).json()[
        "number"
    ]
    numbers = [(await find_order(client, tenant_key, r))["number"] for r in refs]
    assert numbers == [before + 1, before + 2, before + 3]
    assert after == before + 4


async def test_the_catalog_refuses_unknown_skus_in_imports_too(client, db):
    from orderdesk.accounts import services as accounts
    from orderdesk.tenants import services as tenants

    tenant = await make_tenant(db, "Catalog Import Co")
    key = (await accounts.issue_api_key(db, await tenants.system_actor(db), tenant.id, "k")).secret
    await client.put("/api/v1/catalog/TENT-2P", json={"name": "Tent"}, headers=bearer(key))
    await client.put("/api/v1/catalog/MAT-1", json={"name": "Mat", "active": False}, headers=bearer(key))
    known, refused = ref("CAT"), ref("CAT")
    rows = [*order_rows(known, lines=1), *order_rows(refused, lines=2)]
    report = (await upload(client, key, csv_text(rows))).json()
    assert (report["orders_created"], report["orders_rejected"], report["rows_rejected"]) == (1, 1, 2)
    assert [(p["row"], p["column"], p["message"]) for p in report["first_problems"]] == [
        (4, "sku", "'MAT-1' is no longer sold (inactive)")
    ]


async def test_rows_of_an_order_must_be_next_to_each_other(client, world: World):
    split, other = ref("SPLIT"), ref("OTHER")
    first, second = order_rows(split, lines=2)
    rows = [first, *order_rows(other, lines=1), second]
    report = (await upload(client, world.key_a, csv_text(rows))).json()
    assert report["orders_created"] == 2 and report["orders_rejected"] == 1
    [problem] = report["first_problems"]
    assert (problem["row"], problem["column"]) == (4, "external_ref")
    assert "already appeared earlier in the file" in problem["message"]
    assert len((await find_order(client, world.key_a, split))["lines"]) == 1


async def test_order_values_must_agree_between_an_orders_rows(client, world: World):
    r = ref("AGREE")
    rows = order_rows(r, lines=3)
    rows[1]["currency"] = "USD"
    rows[2]["customer_name"] = ""  # empty: fine, the first row's value applies
    report = (await upload(client, world.key_a, csv_text(rows))).json()
    [problem] = report["first_problems"]
    assert (problem["row"], problem["column"]) == (3, "currency")
    assert "differs from 'EUR' on the order's first row (row 2)" in problem["message"]


async def test_unknown_columns_are_ignored_with_a_warning(client, world: World):
    r = ref("EXTRA")
    columns = [*(c for c in COLUMNS if c != "ship_region"), "gift_wrap", "ship_regoin"]
    rows = [dict(row, gift_wrap="yes", ship_regoin="BE") for row in order_rows(r, lines=1)]
    report = (await upload(client, world.key_a, csv_text(rows, columns=columns))).json()
    assert report["status"] == "done" and report["orders_created"] == 1
    warnings = {p["column"]: p["message"] for p in report["first_problems"]}
    assert all(p["row"] == 1 for p in report["first_problems"])
    assert warnings["gift_wrap"] == "unknown column, its values are ignored"
    assert warnings["ship_regoin"].endswith("did you mean ship_region?")


# ---------------------------------------------------------------- encodings and delimiters


async def test_utf8_with_bom_semicolons_and_quoted_line_breaks(client, world: World):
    r = ref("BOM")
    rows = order_rows(r, lines=2, customer_name="Zoë Ørsted", notes='Erste Zeile;\nzweite "Zeile"')
    body = b"\xef\xbb\xbf" + csv_text(rows, delimiter=";").encode()
    report = (await upload(client, world.key_a, body)).json()
    assert (report["encoding"], report["delimiter"], report["orders_created"]) == ("utf-8-sig", ";", 1)
    order = await find_order(client, world.key_a, r)
    assert order["customer_name"] == "Zoë Ørsted"
    assert order["notes"] == 'Erste Zeile;\nzweite "Zeile"'


async def test_windows_1252_is_detected(client, world: World):
    r = ref("LATIN")
    rows = order_rows(r, lines=1, customer_name="Jürgen Müßig", ship_city="Köln", notes="5 € Rabatt")
    rows[0]["ship_postal_code"] = "50667"
    report = (await upload(client, world.key_a, csv_text(rows).encode("cp1252"))).json()
    assert (report["encoding"], report["orders_created"]) == ("cp1252", 1)
    order = await find_order(client, world.key_a, r)
    assert order["customer_name"] == "Jürgen Müßig" and order["notes"] == "5 € Rabatt"


async def test_tabs_and_an_explicit_encoding(client, world: World):
    r = ref("TAB")
    rows = order_rows(r, lines=2, customer_name="Ana Peña")
    body = csv_text(rows, delimiter="\t").encode("latin-1")
    report = (await upload(client, world.key_a, body, encoding="latin-1", delimiter="tab")).json()
    assert (report["encoding"], report["delimiter"], report["orders_created"]) == ("latin-1", "\t", 1)
    assert (await find_order(client, world.key_a, r))["customer_name"] == "Ana Peña"


async def test_bytes_invalid_in_the_detected_encoding_are_reported(client, world: World):
    goods = [ref("OK") for _ in range(450)]
    broken = ref("BROKEN")
    rows = [
        *(row for r in goods for row in order_rows(r, lines=1)),
        *order_rows(broken, lines=1, customer_name="NAME"),
    ]
    # A UTF-8 file (decided from its first 64 KiB) with one stray Latin-1 byte further on.
    body = csv_text(rows).encode().replace(b"NAME", b"Ren\xe9")
    assert body.index(b"Ren\xe9") > 64 * 1024
    report = (await upload(client, world.key_a, body)).json()
    assert (report["encoding"], report["orders_created"], report["orders_rejected"]) == ("utf-8", 450, 1)
    [problem] = report["first_problems"]
    assert (problem["row"], problem["column"]) == (452, "customer_name")
    assert "not valid utf-8" in problem["message"]


# ---------------------------------------------------------------- files that cannot be read


async def test_missing_columns_fail_the_import_and_write_nothing(client, world: World):
    r = ref("NOCOL")
    columns = [c for c in COLUMNS if c not in ("currency", "quantity")]
    response = await upload(client, world.key_a, csv_text(order_rows(r, lines=2), columns=columns))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["detail"] == "Missing required columns: currency, quantity."
    assert body["import"]["status"] == "failed" and body["import"]["orders_created"] == 0
    assert await find_order(client, world.key_a, r) is None
    state = (
        await client.get(f"/api/v1/orders/imports/{body['import']['id']}", headers=bearer(world.key_a))
    ).json()
    assert state["status"] == "failed" and state["failure"] == body["detail"]


async def test_a_wrong_delimiter_is_explained(client, world: World):
    text = csv_text(order_rows(ref("DELIM"), lines=1), delimiter="|")
    response = await upload(client, world.key_a, text)
    assert response.status_code == 422
    assert "is the delimiter a comma, a semicolon or a tab?" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "The file is empty: expected a header row and at least one order row"),
        (csv_text([]).encode(), "The file has a header row but no order rows"),
        ((csv_text([]) + "\r\n,,,\r\n").encode(), "The file has a header row but no order rows"),
        (
            b"\r\n" + csv_text([]).encode(),
            "The first row is empty; it must be the header row naming the columns",
        ),
    ],
    ids=["empty", "header-only", "header-and-blank-rows", "blank-first-row"],
)
async def test_empty_and_header_only_files(client, world: World, body, detail):
    response = await upload(client, world.key_a, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    assert response.json()["import"]["status"] == "failed"


async def test_a_row_too_long_to_be_a_row_stops_reading_and_refuses_the_order_it_cuts(client, world: World):
    whole, cut = ref("WHOLE"), ref("CUT")
    text = csv_text([*order_rows(whole, lines=1), *order_rows(cut, lines=1)])
    # The cut order's second row never ends: over 1 MiB without a line break.
    body = text.encode() + (cut + ",").encode() + b"x" * (1024 * 1024 + 10)
    response = await upload(client, world.key_a, body)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["status"] == "done" and "without a line break" in report["failure"]
    assert (report["orders_created"], report["orders_rejected"]) == (1, 1)
    assert report["bytes_read"] == len(body)
    [problem] = report["first_problems"]
    assert (problem["row"], problem["external_ref"]) == (3, cut) and "reading stopped" in problem["message"]
    assert await find_order(client, world.key_a, cut) is None


async def test_an_upload_over_the_limit_is_refused_with_413(client, world: World):
    created = (await client.post("/api/v1/orders/imports", json={"filename": "huge.csv"},
                                 headers=bearer(world.key_a))).json()  # fmt: skip
    response = await client.put(
        f"/api/v1/orders/imports/{created['id']}/file",
        content=b"external_ref\r\n",
        headers={**bearer(world.key_a), "Content-Type": "text/csv", "Content-Length": str(3 * 1024**3)},
    )
    assert response.status_code == 413
    assert "larger than the upload limit of 2 GiB" in response.json()["detail"]
    state = (await client.get(f"/api/v1/orders/imports/{created['id']}", headers=bearer(world.key_a))).json()
    assert state["status"] == "failed" and "larger than the upload limit" in state["failure"]


async def test_json_bodies_keep_their_small_limit(client, world: World):
    response = await client.post(
        "/api/v1/orders/imports",
        content=b'{"filename": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={**bearer(world.key_a), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_a_form_upload_is_refused_clearly(client, world: World):
    response = await client.post(
        "/api/v1/orders/imports/csv?filename=x.csv",
        files={"file": ("x.csv", b"a,b\r\n")},
        headers=bearer(world.key_a),
    )
    assert response.status_code == 415
    assert "not a form" in response.json()["detail"]


# ---------------------------------------------------------------- the two-step flow


async def test_create_then_upload_then_read(client, world: World):
    headers = bearer(world.key_a)
    created = await client.post("/api/v1/orders/imports", json={"filename": "nov.csv"}, headers=headers)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "pending" and job["tenant_id"] == str(world.a.id) and job["problems"] == 0
    assert job["errors_url"] == f"/api/v1/orders/imports/{job['id']}/errors.csv"
    text = csv_text(order_rows(ref("TWO"), lines=2))
    uploaded = await client.put(
        f"/api/v1/orders/imports/{job['id']}/file",
        content=text.encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["orders_created"] == 1
    state = (await client.get(f"/api/v1/orders/imports/{job['id']}", headers=headers)).json()
    assert state["status"] == "done" and state["finished_at"] and state["bytes_read"] == len(text)
    again = await client.put(
        f"/api/v1/orders/imports/{job['id']}/file",
        content=text.encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert again.status_code == 409
    listed = (await client.get("/api/v1/orders/imports", headers=headers)).json()
    assert job["id"] in [i["id"] for i in listed]
    assert {i["tenant_id"] for i in listed} == {str(world.a.id)}


async def test_staff_with_several_tenants_must_name_one(client, world: World):
    await sign_in(client, world.admin)
    token = session_csrf((await client.get("/console/imports")).text)
    response = await client.post("/api/v1/orders/imports", json={"filename": "x.csv"},
                                 headers={"X-CSRF-Token": token})  # fmt: skip
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "tenant_id", "message": "is required: you work for several tenants"}
    ]


async def test_b_import_is_untouched_by_a(client, world: World):
    headers_b = bearer(world.key_b)
    job = (await client.post("/api/v1/orders/imports", json={"filename": "b.csv"}, headers=headers_b)).json()
    text = csv_text(order_rows(ref("B"), lines=1))
    foreign = await client.put(
        f"/api/v1/orders/imports/{job['id']}/file",
        content=text.encode(),
        headers={**bearer(world.key_a), "Content-Type": "text/csv"},
    )
    assert foreign.status_code == 404
    assert (await client.get(f"/api/v1/orders/imports/{job['id']}", headers=headers_b)).json()[
        "status"
    ] == "pending"
    foreign_tenant = await upload(client, world.key_a, text, tenant_id=str(world.b.id))
    assert foreign_tenant.status_code == 404


# ---------------------------------------------------------------- console


async def test_the_console_page_uploads_and_shows_progress(client, world: World):
    await sign_in(client, world.lead_a)
    page = await client.get("/console/imports")
    assert page.status_code == 200
    assert 'id="import-form"' in page.text and 'type="file"' in page.text
    assert 'name="tenant_id" value="' + str(world.a.id) in page.text  # one tenant: no select
    token = session_csrf(page.text)
    headers = {"X-CSRF-Token": token}
    job = (
        await client.post("/api/v1/orders/imports", json={"filename": "console.csv"}, headers=headers)
    ).json()
    waiting = await client.get(f"/console/imports/{job['id']}/progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in waiting.text and "waiting for the file" in waiting.text
    rows = [*order_rows(ref("CON"), lines=2), *order_rows(ref("CON"), lines=1, currency="XYZ")]
    no_token = await client.put(f"/api/v1/orders/imports/{job['id']}/file", content=csv_text(rows).encode(),
                                headers={"Content-Type": "text/csv"})  # fmt: skip
    assert no_token.status_code == 403
    done = await client.put(f"/api/v1/orders/imports/{job['id']}/file", content=csv_text(rows).encode(),
                            headers={**headers, "Content-Type": "text/csv"})  # fmt: skip
    assert done.status_code == 200, done.text
    finished = await client.get(f"/console/imports/{job['id']}/progress", headers={"HX-Request": "true"})
    assert "every 1s" not in finished.text  # polling stops
    assert "Download the error report" in finished.text and job["errors_url"] in finished.text
    assert 'id="recent-imports" hx-swap-oob="true"' in finished.text and "console.csv" in finished.text
    assert "<dt>Orders created</dt><dd>1</dd>" in finished.text


async def test_a_finished_import_lists_its_problems_on_the_console(client, world: World):
    await sign_in(client, world.agent_a)
    headers = {"X-CSRF-Token": session_csrf((await client.get("/console/imports")).text)}
    hostile = "<b>X</b>"
    rows = [*order_rows(ref("LIST"), lines=1), *order_rows(hostile, lines=1, currency="XYZ")]
    rows += [row for n in range(25) for row in order_rows(ref("MANY"), lines=1, currency="ABC")]
    report = (
        await client.post("/api/v1/orders/imports/csv", params={"filename": "list.csv"},
                          content=csv_text(rows).encode(), headers={**headers, "Content-Type": "text/csv"})
    ).json()  # fmt: skip
    assert report["problems"] == 26
    shown = await client.get(f"/console/imports/{report['id']}/progress", headers={"HX-Request": "true"})
    assert 'data-testid="import-problems"' in shown.text
    assert "the first 20 of 26; the error report lists them all" in shown.text
    assert "&lt;b&gt;X&lt;/b&gt;" in shown.text and hostile not in shown.text  # escaped, never markup
    assert "&#39;XYZ&#39; is not an ISO 4217 currency code" in shown.text
    assert shown.text.count("&#39;ABC&#39; is not an ISO 4217 currency code") == 19


async def test_staff_with_several_tenants_choose_in_a_select(client, world: World):
    await sign_in(client, world.admin)
    page = await client.get("/console/imports")
    assert '<select name="tenant_id" required>' in page.text
    assert world.a.name in page.text


async def test_client_users_do_not_get_the_console_page(client, world: World):
    await sign_in(client, world.client_admin_a)
    assert (await client.get("/console/imports")).status_code == 403


# ---------------------------------------------------------------- a large file, streamed

LARGE_ROWS = 40_000  # about 10 MiB
# By then the first batches are stored: the pool, the statement caches and one batch's
# objects, which every later batch reuses, have grown the process to its working size.
WARM_UP_BYTES = 2 * 2**20
CHUNK = 64 * 1024
DESCRIPTION = "Trekking pole, carbon, adjustable 100-135 cm, cork grip, tungsten tip, with rubber feet"


async def generated_csv(rows: int, prefix: str, lines_per_order: int = 20) -> AsyncIterator[bytes]:
    """A CSV body made on the fly and sent in 64 KiB chunks; never held whole.

    Twenty line items per order (a wholesale order): what streams is rows, and work per
    order (other features react to each) would make the suite slow; the benchmark
    measures a million rows at two lines an order.
    """
    header = ",".join(COLUMNS) + "\r\n"
    pending, size = [header], len(header)
    for n in range(rows // lines_per_order):
        order = (
            f"{prefix}-{n},Kunde {n},k{n}@{prefix}.example.com,,Hauptstr. {n % 200 + 1},,Berlin,,"
            f"{10115 + n % 800},DE,EUR,paid,normal,bulk,Deliver to the back door {n},,,495,0,,"
        )
        for line in range(lines_per_order):
            text = f'{order}SKU-{(n + line) % 50},"{DESCRIPTION} {line}",{line % 3 + 1},1999,380\r\n'
            pending.append(text)
            size += len(text)
        if size >= CHUNK:
            yield "".join(pending).encode()
            pending, size = [], 0
            await asyncio.sleep(0)  # let the server take what was sent, as a network would
    yield "".join(pending).encode()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Give memory freed earlier in the process back to the system (glibc's malloc_trim).

    Otherwise the resident size keeps what earlier work (the migrations, other tests)
    freed, and a growth of a few MiB fits in there unseen.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: the check is then only as strict as the resident size allows
        return
    libc.malloc_trim(0)


async def test_a_large_file_streams_in_flat_memory(settings, world: World):
    """40,000 rows through the real app, its body never in memory at once.

    Litestar's test client reads a request body whole before sending it, so this test
    drives the app through httpx's ASGI transport, which passes chunks on as the
    generator makes them (it asks for the next one only when the app reads on). The
    server's resident memory is sampled while it works. Once the first batches are
    stored the process has its working size; from there on, holding the body would add
    what is sent, and holding rows or orders several times that, so memory must stay
    flat over the rest of the file.
    """
    from orderdesk.app import create_app

    app = create_app(settings)
    prefix = f"big{uuid.uuid4().hex[:6]}"
    release_freed_memory()
    peak = baseline = rss_bytes()
    peak_when_warm: int | None = None
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.02)

    async def body() -> AsyncIterator[bytes]:
        nonlocal peak, peak_when_warm
        sent = 0
        async for chunk in generated_csv(LARGE_ROWS, prefix):
            if peak_when_warm is None and sent >= WARM_UP_BYTES:
                peak = peak_when_warm = max(peak, rss_bytes())
            sent += len(chunk)
            yield chunk

    started, cpu_started = time.monotonic(), time.process_time()
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver.local", timeout=120
        ) as http,
    ):
        sampler = asyncio.create_task(sample())
        response = await http.post(
            "/api/v1/orders/imports/csv",
            params={"filename": "big.csv"},
            content=body(),
            headers={**bearer(world.key_a), "Content-Type": "text/csv"},
        )
        done.set()
        await sampler
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["rows_read"] == LARGE_ROWS
    assert report["orders_created"] == LARGE_ROWS // 20 and report["rows_rejected"] == 0, report[
        "first_problems"
    ][:3]
    assert report["bytes_total"] is None  # chunked: no Content-Length, progress counts bytes only
    assert peak_when_warm is not None
    after_warm_up_mib = (report["bytes_read"] - WARM_UP_BYTES) / 2**20
    warm_up_mib = (peak_when_warm - baseline) / 2**20
    growth_mib = (peak - peak_when_warm) / 2**20
    print(
        f"\n{LARGE_ROWS} rows, {report['bytes_read'] / 2**20:.1f} MiB in {elapsed:.1f} s "
        f"({cpu:.1f} s of CPU in this process); server RSS grew {warm_up_mib:.1f} MiB over the first "
        f"{WARM_UP_BYTES / 2**20:.0f} MiB, then {growth_mib:.1f} MiB over {after_warm_up_mib:.1f} MiB"
    )
    assert after_warm_up_mib > 7  # several batches of 200 orders (about 1 MiB each) after warming up
    # Holding the body would add what was sent; its rows or orders as Python objects, several times it.
    assert growth_mib < 0.5 * after_warm_up_mib, (
        f"RSS grew {growth_mib:.1f} MiB while {after_warm_up_mib:.1f} MiB more of the file streamed in"
    )


# ---------------------------------------------------------------- other features' reactions


async def _outbox_of(owner_connection, order_id: str) -> list[tuple[str, int, dict]]:
    rows = await owner_connection.fetch(
        "SELECT event_type, order_seq, payload::text FROM outbox_events"
        " WHERE order_id = $1 ORDER BY order_seq",
        uuid.UUID(order_id),
    )
    return [(r["event_type"], r["order_seq"], json.loads(r["payload"])) for r in rows]


async def _work_items_of(owner_connection, order_id: str) -> list[dict]:
    rows = await owner_connection.fetch(
        "SELECT kind::text, status::text, cause, title, priority::text, value_minor, currency, order_number,"
        " client_tier, sla_target_seconds, due_at IS NOT NULL AS due FROM work_items WHERE order_id = $1",
        uuid.UUID(order_id),
    )
    return [dict(r) for r in rows]


async def test_an_imported_order_reaches_the_outbox_and_the_work_queue_as_an_api_order(
    client, world: World, owner_connection
):
    body = order_body()
    api = (await client.post("/api/v1/orders", json=body, headers=bearer(world.key_b))).json()
    imported_ref = ref("REACT")
    rows = order_rows(imported_ref, lines=2, customer_email=f"{uuid.uuid4().hex[:8]}@example.com")
    assert (await upload(client, world.key_b, csv_text(rows))).json()["orders_created"] == 1
    imported = await find_order(client, world.key_b, imported_ref)

    api_events = await _outbox_of(owner_connection, api["id"])
    imported_events = await _outbox_of(owner_connection, imported["id"])
    assert [(t, s) for t, s, _ in imported_events] == [("order.created", 1), ("order.verification_needed", 2)]
    assert [(t, s) for t, s, _ in api_events] == [(t, s) for t, s, _ in imported_events]
    for (_, seq, payload), (_, _, api_payload) in zip(imported_events, api_events, strict=True):
        assert set(payload) == set(api_payload)
        assert payload["tenant_id"] == str(world.b.id) and payload["version"] == api_payload["version"]
        assert payload["data"]["sequence"] == seq
        order = payload["data"]["order"]
        assert order["id"] == imported["id"] and order["external_ref"] == imported_ref
        assert order["number"] == imported["number"] and order["total_minor"] == imported["total_minor"]
        assert set(order) == set(api_payload["data"]["order"])
        assert set(payload["data"]["change"]) == set(api_payload["data"]["change"])
    created, waiting = (p["data"] for _, _, p in imported_events)
    assert created["order"]["status"] == "captured" and waiting["order"]["status"] == "awaiting_verification"
    assert created["change"]["channel"] == "csv" and created["change"]["actor_kind"] == "api_key"
    assert created["change"]["summary"] == f"Order #{imported['number']} captured via csv"
    assert waiting["change"]["changes"]["failed_checks"] == []

    [item] = await _work_items_of(owner_connection, imported["id"])
    [api_item] = await _work_items_of(owner_connection, api["id"])
    assert item["title"] == f"Verify order #{imported['number']}: manual verification"
    assert item["order_number"] == imported["number"] and item["value_minor"] == imported["total_minor"]
    same = ("kind", "status", "cause", "priority", "currency", "client_tier", "sla_target_seconds", "due")
    assert {k: item[k] for k in same} == {k: api_item[k] for k in same}


async def test_imported_orders_verified_automatically_are_allocated_as_api_orders_are(
    client, world: World, db, owner_connection
):
    from orderdesk.orders import catalog
    from orderdesk.orders.verification import VerificationPolicy
    from orderdesk.tenants import services as tenants
    from tests.integration.test_inventory import make_warehouse, put_stock

    key = world.key_a
    await catalog.set_verification_policy(
        db, await tenants.system_actor(db), world.a.id, VerificationPolicy(auto_verify=True)
    )
    warehouse = await make_warehouse(client, key, f"IMP{uuid.uuid4().hex[:4].upper()}")
    await put_stock(client, key, warehouse, TENT_2P=10, MAT_1=10)
    refs = [ref("AUTO") for _ in range(2)]
    report = (await upload(client, key, csv_text([row for r in refs for row in order_rows(r)]))).json()
    assert report["orders_created"] == 2
    for r in refs:
        order = await find_order(client, key, r)
        assert order["status"] == "allocated"
        events = (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(key))).json()
        assert [e["kind"] for e in events] == ["created", "verified", "allocate"]
        outbox = await _outbox_of(owner_connection, order["id"])
        assert [(t, s) for t, s, _ in outbox] == [
            ("order.created", 1),
            ("order.verified", 2),
            ("order.allocated", 3),
        ]
        assert await _work_items_of(owner_connection, order["id"]) == []
