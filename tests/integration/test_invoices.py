"""Invoices and credit notes: gapless numbers under concurrency, issue moments, totals, HTML and PDF."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from orderdesk.fulfillment import policy as policies
from orderdesk.invoices import services as invoices
from orderdesk.invoices.models import DocumentKind, Invoice
from orderdesk.orders import services as order_services
from orderdesk.tenants import services as tenants
from tests.conftest import World
from tests.integration.test_fulfillment import ship, track
from tests.integration.test_inventory import make_warehouse, new_order, put_stock, timeline, verify
from tests.integration.test_orders_api import bearer, order_body


class Boom(Exception):
    pass


async def test_concurrent_issuing_numbers_without_gaps(client, world: World, db):
    """Thirty issuers at once, every third failing after it took a number: no gap, no repeat."""
    key = world.key_a
    orders = []
    for _ in range(30):
        created = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(key))).json()
        orders.append(await verify(client, key, created))
    system = await tenants.system_actor(db)

    async def issue(i: int, order_id: str):
        if i % 3 == 2:
            async with db.transaction(system.scope) as session:
                order = await order_services.lock_order(session, system, uuid.UUID(order_id))
                await invoices.issue_invoice_in(session, system, order)
                raise Boom  # rolls back: its number must be handed out again
        return await invoices.issue_invoice(db, system, uuid.UUID(order_id))

    results = await asyncio.gather(*(issue(i, o["id"]) for i, o in enumerate(orders)), return_exceptions=True)
    assert sum(isinstance(r, Boom) for r in results) == 10
    async with db.transaction(system.scope) as session:
        sequences = sorted(
            await session.scalars(
                select(Invoice.sequence).where(
                    Invoice.tenant_id == world.a.id,
                    Invoice.kind == DocumentKind.INVOICE,
                    Invoice.year == dt.datetime.now(dt.UTC).year,
                )
            )
        )
    assert sequences == list(range(1, 21))
    # B's numbering is its own.
    b_order = await verify(
        client,
        world.key_b,
        (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_b))).json(),
    )
    first_b = await client.post(f"/api/v1/orders/{b_order['id']}/invoice", headers=bearer(world.key_b))
    assert first_b.json()["number"] == f"INV-{dt.datetime.now(dt.UTC).year}-000001"


async def test_manual_issue_is_idempotent_and_refused_before_verification(client, world: World):
    key = world.key_a
    captured = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(key))).json()
    refused = await client.post(f"/api/v1/orders/{captured['id']}/invoice", headers=bearer(key))
    assert refused.status_code == 409
    order = await verify(client, key, captured)
    first = await client.post(f"/api/v1/orders/{order['id']}/invoice", headers=bearer(key))
    again = await client.post(f"/api/v1/orders/{order['id']}/invoice", headers=bearer(key))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    invoice = first.json()
    # Totals match the order to the minor unit.
    for field in (
        "subtotal_minor",
        "tax_minor",
        "shipping_minor",
        "discount_minor",
        "total_minor",
        "currency",
    ):
        assert invoice[field] == order[field], field
    assert [(line["sku"], line["quantity"], line["total_minor"]) for line in invoice["lines"]] == [
        (line["sku"], line["quantity"], line["total_minor"]) for line in order["lines"]
    ]
    assert (await timeline(client, key, order))[-1]["summary"] == (
        f"Invoice {invoice['number']} issued: 503.57 EUR"
    )


@pytest.mark.parametrize("moment", ["verification", "shipment"])
async def test_invoice_at_the_tenants_moment_and_a_credit_note_for_a_refund(client, world: World, db, moment):
    key = world.key_a
    await policies.set_policy(
        db, await tenants.system_actor(db), world.a.id, policies.FulfillmentPolicy(invoice_on=moment)
    )
    wh = await make_warehouse(client, key, "INV")
    await put_stock(client, key, wh, TENT=2)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    listed = (await client.get(f"/api/v1/orders/{order['id']}/invoices", headers=bearer(key))).json()
    assert len(listed) == (1 if moment == "verification" else 0)
    shipment = await ship(client, key, order, wh, [(1, 1)])
    listed = (await client.get(f"/api/v1/orders/{order['id']}/invoices", headers=bearer(key))).json()
    assert [i["kind"] for i in listed] == ["invoice"]
    await ship(client, key, order, wh, [(1, 1)])
    await track(client, key, shipment, "delivered", 10)
    second = (await client.get(f"/api/v1/orders/{order['id']}/shipments", headers=bearer(key))).json()[1]
    await track(client, key, second, "delivered", 20)
    rma = (
        await client.post(
            f"/api/v1/orders/{order['id']}/returns",
            json={"reason": "defective", "lines": [{"line_no": 1, "quantity": 1}]},
            headers=bearer(key),
        )
    ).json()
    await client.post(f"/api/v1/returns/{rma['id']}/approve", headers=bearer(key))
    await client.post(f"/api/v1/returns/{rma['id']}/receive", json={}, headers=bearer(key))
    refund = await client.post(
        f"/api/v1/returns/{rma['id']}/refund", json={"amount_minor": 1190}, headers=bearer(key)
    )
    assert refund.status_code == 200, refund.text
    invoice, credit = (await client.get(f"/api/v1/orders/{order['id']}/invoices", headers=bearer(key))).json()
    assert credit["kind"] == "credit_note" and credit["invoice_id"] == invoice["id"]
    assert credit["number"].startswith(f"CN-{dt.datetime.now(dt.UTC).year}-")
    assert credit["total_minor"] == 1190 and credit["return_id"] == rma["id"]
    assert credit["tax_minor"] + credit["subtotal_minor"] == 1190

    html = await client.get(f"/api/v1/invoices/{invoice['id']}/html", headers=bearer(key))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert invoice["number"] in html.text and "20.00 EUR" in html.text and "Erika Mustermann" in html.text
    credit_html = await client.get(f"/api/v1/invoices/{credit['id']}/html", headers=bearer(key))
    assert f"corrects {invoice['number']}" in credit_html.text and "11.90 EUR" in credit_html.text
    pdf = await client.get(f"/api/v1/invoices/{credit['id']}/pdf", headers=bearer(key))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) > 1000


def test_proportional_tax_rounds_half_up_in_minor_units():
    assert invoices.proportional_tax(1190, 190, 1190) == 190
    assert invoices.proportional_tax(595, 190, 1190) == 95
    assert invoices.proportional_tax(1, 190, 1190) == 0
    assert invoices.proportional_tax(100, 0, 1000) == 0
    assert invoices.proportional_tax(5, 1, 10) == 1  # 0.5 rounds up


def test_pdf_without_a_unicode_font_folds_text(monkeypatch):
    from orderdesk.invoices import render
    from orderdesk.invoices.schemas import InvoiceView

    monkeypatch.setattr(render, "UNICODE_FONTS", ())
    view = InvoiceView(
        id=uuid.uuid4(),
        kind="invoice",
        number="INV-2026-000001",
        year=2026,
        sequence=1,
        order_id=uuid.uuid4(),
        invoice_id=None,
        return_id=None,
        currency="JPY",
        subtotal_minor=1500,
        tax_minor=0,
        shipping_minor=0,
        discount_minor=0,
        total_minor=1500,
        lines=[
            {
                "description": "Zelt für Łódź 東京",
                "sku": "T",
                "quantity": 1,
                "unit_price_minor": 1500,
                "tax_minor": 0,
                "total_minor": 1500,
            }
        ],
        seller={"name": "Acme"},
        buyer={"name": "Zoë Ødegård", "address": {"line1": "x", "city": "y", "country": "JP"}},
        issued_at=dt.datetime.now(dt.UTC),
    )
    assert render.to_pdf(render.document(view, 1001)).startswith(b"%PDF-")
    assert "1500 JPY" in render.to_html(render.document(view, 1001))
