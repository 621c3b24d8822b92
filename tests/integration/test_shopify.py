"""Shopify: connections, the signed orders/create webhook, and the payload mapping.

The payload in tests/fixtures/shopify/orders_create.json is modelled on Shopify's
documented example: a US shop with tax added on top (per line, on discounted
prices, and on shipping), a 10% order discount allocated to every line, and a line
without a SKU. Its amounts add up the way Shopify's do.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from orderdesk.shops import services as shops
from orderdesk.shops import shopify
from orderdesk.tenants import services as tenants
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import bearer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shopify" / "orders_create.json"
DOMAIN = "acme-outdoor.myshopify.com"
SECRET = "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"


def payload(**changes) -> dict:
    document = json.loads(FIXTURE.read_text())
    document.update(copy.deepcopy(changes))
    return document


def encoded(document: dict) -> bytes:
    return json.dumps(document).encode()


async def deliver(
    client,
    tenant_slug: str,
    body: bytes,
    *,
    secret: str = SECRET,
    topic: str = "orders/create",
    domain: str = DOMAIN,
    webhook_id: str | None = None,
    signature: str | None = None,
):
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": domain,
        "X-Shopify-Hmac-Sha256": signature if signature is not None else shopify.sign(secret, body),
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-API-Version": "2026-10",
    }
    return await client.post(f"/hooks/shopify/{tenant_slug}", content=body, headers=headers)


@pytest.fixture
async def connected(db, world: World):
    """A's shop, connected with SECRET."""
    system = await tenants.system_actor(db)
    return (
        await shops.connect_shop(db, system, tenant_id=world.a.id, shop_domain=DOMAIN, webhook_secret=SECRET)
    ).connection


async def orders_of(client, key: str) -> list[dict]:
    return (await client.get("/api/v1/orders?limit=200", headers=bearer(key))).json()["items"]


# ---------------------------------------------------------------- the webhook


async def test_a_signed_orders_create_becomes_the_mapped_order(client, world: World, connected):
    response = await deliver(client, world.a.slug, FIXTURE.read_bytes())
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["outcome"] == "created"
    order = (await client.get(f"/api/v1/orders/{receipt['order_id']}", headers=bearer(world.key_a))).json()

    assert order["number"] == receipt["order_number"]
    assert order["external_ref"] == "shopify:5821037449321"
    assert order["channel"] == "shop"
    assert (order["customer_name"], order["customer_email"], order["customer_phone"]) == (
        "Jordan Rivera",
        "jordan.rivera@example.com",
        "+15105550134",
    )
    assert order["shipping_address"] == {
        "name": "Jordan Rivera",
        "company": None,
        "line1": "2150 Shattuck Ave",
        "line2": "Apt 4B",
        "city": "Berkeley",
        "region": "CA",
        "postal_code": "94704",
        "country": "US",
    }
    assert order["billing_address"]["company"] == "Rivera Design LLC"
    assert order["billing_address"]["postal_code"] == "94105"
    assert order["currency"] == "USD"
    assert [
        (line["sku"], line["description"], line["quantity"], line["unit_price_minor"], line["tax_minor"])
        for line in order["lines"]
    ] == [
        ("TENT-2P-GRN", "Trailhead 2P Tent / Forest Green", 1, 24900, 1625),
        ("MAT-UL-REG", "Ultralight Sleeping Mat / Regular", 2, 5950, 776),
        ("shopify-variant-40213874221101", "Gift wrapping", 1, 500, 33),
    ]
    # Shipping carries its own tax (0.87); the order discount is every allocation together.
    assert (
        order["subtotal_minor"],
        order["tax_minor"],
        order["shipping_minor"],
        order["discount_minor"],
    ) == (
        37300,
        2434,
        1287,
        3730,
    )
    assert order["total_minor"] == 37291  # Shopify's total_price 372.91, checked by the server
    assert order["payment_status"] == "paid"
    assert order["tags"] == ["summer-sale", "vip", "gift"]
    assert order["notes"].startswith(
        "Shopify order #1042 (acme-outdoor.myshopify.com), placed 2026-11-20T17:14:03Z."
    )
    assert order["notes"].endswith("Note: Please leave the parcel at the back door, not the front porch.")
    assert order["status"] == "awaiting_verification"

    events = (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(world.key_a))).json()
    created = events[0]
    assert (created["kind"], created["actor_kind"], created["channel"]) == ("created", "system", "shop")
    assert created["actor_name"] == f"Shopify {DOMAIN}"
    assert created["summary"] == f"Order #{order['number']} captured via shop"


async def test_redelivery_never_duplicates(client, world: World, connected):
    body = FIXTURE.read_bytes()
    webhook_id = str(uuid.uuid4())
    first = await deliver(client, world.a.slug, body, webhook_id=webhook_id)
    again = await deliver(client, world.a.slug, body, webhook_id=webhook_id)
    # A second subscription to the same topic delivers the same order under another webhook id.
    other_subscription = await deliver(client, world.a.slug, body)
    assert first.status_code == 201
    assert again.status_code == 200 and again.json()["outcome"] == "existing"
    assert other_subscription.status_code == 200
    assert again.json()["order_id"] == other_subscription.json()["order_id"] == first.json()["order_id"]
    assert len(await orders_of(client, world.key_a)) == 1


async def test_a_webhook_id_reused_for_another_order_is_a_conflict(client, world: World, connected):
    webhook_id = str(uuid.uuid4())
    assert (
        await deliver(client, world.a.slug, FIXTURE.read_bytes(), webhook_id=webhook_id)
    ).status_code == 201
    other = encoded(payload(id=5821037449999, name="#1043"))
    refused = await deliver(client, world.a.slug, other, webhook_id=webhook_id)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert len(await orders_of(client, world.key_a)) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: {"secret": "shpss_not-the-secret-at-all-000"}, id="wrong secret"),
        pytest.param(lambda body: {"signature": ""}, id="no signature"),
        pytest.param(lambda body: {"signature": "not base64 at all!"}, id="garbage signature"),
        pytest.param(
            lambda body: {"signature": shopify.sign(SECRET, body + b" ")}, id="body changed after signing"
        ),
        pytest.param(
            lambda body: {"signature": shopify.sign(SECRET, body).lower()}, id="signature case changed"
        ),
    ],
)
async def test_an_invalid_signature_is_401_and_writes_nothing(client, world: World, connected, tamper):
    body = FIXTURE.read_bytes()
    response = await deliver(client, world.a.slug, body, **tamper(body))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await orders_of(client, world.key_a) == []


async def test_every_authentication_failure_gets_the_same_answer(client, world: World, db, connected):
    system = await tenants.system_actor(db)
    secret_b = "shpss_" + secrets.token_hex(16)
    await shops.connect_shop(
        db, system, tenant_id=world.b.id, shop_domain="borealis-tea.myshopify.com", webhook_secret=secret_b
    )
    body = FIXTURE.read_bytes()
    answers = {
        "bad signature": await deliver(client, world.a.slug, body, secret="shpss_" + "0" * 32),
        "B's secret on A's URL": await deliver(
            client, world.a.slug, body, secret=secret_b, domain="borealis-tea.myshopify.com"
        ),
        "A's domain signed with B's secret": await deliver(client, world.a.slug, body, secret=secret_b),
        "unknown tenant": await deliver(client, "no-such-tenant", body),
        "unknown shop": await deliver(client, world.a.slug, body, domain="someone-else.myshopify.com"),
        "no shop domain": await deliver(client, world.a.slug, body, domain=""),
    }
    await shops.deactivate_shop_connection(db, system, connected.id)
    answers["deactivated connection"] = await deliver(client, world.a.slug, body)
    bodies = {name: (r.status_code, r.json()) for name, r in answers.items()}
    assert set(map(json.dumps, bodies.values())) == {
        json.dumps(
            (
                401,
                {
                    "type": "about:blank",
                    "title": "Unauthorized",
                    "status": 401,
                    "detail": "The webhook could not be authenticated",
                },
            )
        )
    }, bodies
    assert await orders_of(client, world.key_a) == [] and await orders_of(client, world.key_b) == []


async def test_malformed_json_with_a_valid_signature_is_422(client, world: World, connected):
    response = await deliver(client, world.a.slug, b'{"id": 1, "line_items": [')
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/validation"
    [error] = problem["errors"]
    assert error["field"] == "body" and error["message"].startswith("is not valid JSON")


async def test_a_bad_country_is_422_naming_shopifys_field(client, world: World, connected):
    document = payload()
    document["shipping_address"]["country_code"] = "XX"
    document["line_items"][1]["quantity"] = 0
    first = await deliver(client, world.a.slug, encoded(document))
    assert first.status_code == 422
    assert first.json()["errors"] == [
        {"field": "line_items[1].quantity", "message": "Input should be greater than 0"}
    ]
    document["line_items"][1]["quantity"] = 2
    response = await deliver(client, world.a.slug, encoded(document))
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "field": "shipping_address.country_code",
            "message": "'XX' is not an ISO 3166-1 alpha-2 country code",
        }
    ]
    assert await orders_of(client, world.key_a) == []


async def test_totals_that_do_not_add_up_name_total_price(client, world: World, connected):
    response = await deliver(client, world.a.slug, encoded(payload(total_price="380.00")))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "total_price"
    assert "add up to 37291 (372.91 USD)" in error["message"]


async def test_other_topics_are_acknowledged_and_ignored(client, world: World, connected):
    response = await deliver(client, world.a.slug, FIXTURE.read_bytes(), topic="orders/updated")
    assert response.status_code == 202
    assert response.json() == {
        "outcome": "ignored",
        "order_id": None,
        "order_number": None,
        "topic": "orders/updated",
    }
    assert await orders_of(client, world.key_a) == []


def jpy_payload(price: str) -> dict:
    document = payload(
        currency="JPY",
        presentment_currency="JPY",
        total_discounts="0",
        total_price=price,
        shipping_lines=[],
        tax_lines=[],
        taxes_included=True,
        total_tax="136",
    )
    document["line_items"] = [
        {
            **document["line_items"][0],
            "price": price,
            "sku": "TENUGUI-INDIGO",
            "title": "Tenugui",
            "variant_title": "Indigo",
            "tax_lines": [{"price": "136", "rate": 0.1, "title": "JP CT"}],
        }
    ]
    document["shipping_address"].update(
        address1="1-2-3 Kanda",
        address2=None,
        city="Chiyoda-ku",
        province_code="JP-13",
        zip="101-0047",
        country_code="JP",
        phone="03-3224-9999",
    )
    document["billing_address"] = None
    return document


async def test_jpy_has_no_minor_unit(client, world: World, connected):
    response = await deliver(client, world.a.slug, encoded(jpy_payload("1500")))
    assert response.status_code == 201, response.text
    order = (
        await client.get(f"/api/v1/orders/{response.json()['order_id']}", headers=bearer(world.key_a))
    ).json()
    assert (order["currency"], order["lines"][0]["unit_price_minor"], order["total_minor"]) == (
        "JPY",
        1500,
        1500,
    )
    # Tax included in the price: kept in the price, written to the notes.
    assert order["tax_minor"] == 0 and "Prices include tax: 136 JPY." in order["notes"]
    fractional = await deliver(client, world.a.slug, encoded({**jpy_payload("1500.5"), "id": 99}))
    assert fractional.status_code == 422
    assert {
        "field": "line_items[0].price",
        "message": "1500.5 has more decimals than JPY has (0)",
    } in fractional.json()["errors"]


# ---------------------------------------------------------------- the mapping, without a database


def mapped(**changes) -> shopify.MappedOrder:
    return shopify.to_order_create(shopify.parse_order(encoded(payload(**changes))), DOMAIN)


def test_exact_minor_units_never_round():
    assert shopify.exact_minor(Decimal("19.90"), "EUR") == 1990
    assert shopify.exact_minor(Decimal("1500.00"), "JPY") == 1500
    assert shopify.exact_minor(Decimal("1.500"), "KWD") == 1500
    assert shopify.exact_minor(Decimal("0.1") + Decimal("0.2"), "EUR") == 30
    assert shopify.exact_minor(Decimal("19.999"), "EUR") is None
    assert shopify.exact_minor(Decimal("1." + "0" * 70 + "1"), "EUR") is None


def test_signatures():
    body = b'{"id": 1}'
    signature = shopify.sign("secret-1234567890", body)
    assert shopify.signature_matches("secret-1234567890", body, signature)
    assert not shopify.signature_matches("secret-1234567890", body + b"\n", signature)
    assert not shopify.signature_matches("secret-0987654321", body, signature)
    assert not shopify.signature_matches("secret-1234567890", body, None)
    assert not shopify.signature_matches("secret-1234567890", body, "ünïcode")


@pytest.mark.parametrize(
    ("financial_status", "ours", "remark"),
    [
        ("pending", "pending", None),
        ("authorized", "authorized", None),
        ("partially_paid", "pending", "Shopify payment status: partially_paid (recorded as pending)."),
        ("paid", "paid", None),
        ("partially_refunded", "paid", "Shopify payment status: partially_refunded (recorded as paid)."),
        ("refunded", "refunded", None),
        ("voided", "failed", "Shopify payment status: voided (recorded as failed)."),
        ("expired", "failed", "Shopify payment status: expired (recorded as failed)."),
        ("something_new", "pending", "Shopify payment status 'something_new' is not one OrderDesk knows"),
        (None, "pending", "Shopify payment status 'missing' is not one OrderDesk knows"),
    ],
)
def test_financial_status_mapping(financial_status, ours, remark):
    order = mapped(financial_status=financial_status).order
    assert order.payment_status.value == ours
    if remark:
        assert remark in order.notes
    else:
        assert "payment status" not in order.notes


def test_taxes_included_keep_prices_and_note_the_tax():
    document = payload(taxes_included=True, total_price="347.70", total_tax="22.19")
    # An EU-style order: prices with tax in them; total = lines + shipping - discounts.
    for line in document["line_items"]:
        line["tax_lines"] = [{"price": "7.00", "rate": 0.19, "title": "DE MwSt"}]
    result = shopify.to_order_create(shopify.parse_order(encoded(document)), DOMAIN).order
    assert [line.tax_minor for line in result.lines] == [0, 0, 0]
    assert result.shipping_minor == 1200 and result.total_minor == 34770
    assert "Prices include tax: 22.19 USD." in result.notes


def test_presentment_currency_is_noted_and_shop_currency_kept():
    document = payload(presentment_currency="CAD")
    document["total_price_set"]["presentment_money"] = {"amount": "511.24", "currency_code": "CAD"}
    result = shopify.to_order_create(shopify.parse_order(encoded(document)), DOMAIN).order
    assert result.currency == "USD" and result.total_minor == 37291
    assert "The customer saw and paid 511.24 CAD; amounts here are in the shop's USD." in result.notes


def test_sku_fallbacks_and_names():
    document = payload()
    document["line_items"][2].update(variant_id=None, sku=None)
    document["customer"] = None
    result = shopify.to_order_create(shopify.parse_order(encoded(document)), DOMAIN).order
    assert result.lines[2].sku == "shopify-line-14720385466473"
    assert result.customer.name == "Jordan Rivera"  # from the shipping address


def test_an_unusable_phone_is_left_out_when_there_is_an_email():
    document = payload(phone=None)
    document["customer"]["phone"] = None
    document["shipping_address"]["phone"] = "call the office"
    document["billing_address"]["phone"] = None
    result = shopify.to_order_create(shopify.parse_order(encoded(document)), DOMAIN).order
    assert result.customer.phone is None
    assert (
        "Phone 'call the office' from Shopify (shipping_address.phone) is not a valid number" in result.notes
    )


def test_tags_beyond_twenty_are_noted_and_test_orders_tagged():
    tags = ", ".join(f"t{i}" for i in range(25))
    result = mapped(tags=tags, test=True).order
    assert result.tags[0] == "shopify-test" and len(result.tags) == 20
    assert "Shopify tags not kept (OrderDesk keeps 20): t19, t20, t21, t22, t23, t24." in result.notes
    assert "Test order" in result.notes


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"line_items": []}, "line_items"),
        ({"currency": "EURO"}, "currency"),
        ({"total_price": "-1.00"}, "total_price"),
        ({"total_price": "abc"}, "total_price"),
        ({"id": "not-a-number"}, "id"),
        ({"shipping_address": None}, "shipping_address"),
        ({"processed_at": "yesterday"}, "processed_at"),
        ({"total_discounts": "0.001"}, "total_discounts"),
    ],
)
def test_payload_errors_name_shopifys_fields(changes, field):
    with pytest.raises(shopify.ValidationFailed) as raised:
        mapped(**changes)
    assert field in {e.field for e in raised.value.errors}, raised.value.errors


def test_intake_fields_are_translated_back():
    sources = mapped().sources
    assert shopify.shopify_field(sources, "lines[2].sku") == "line_items[2].variant_id"
    assert shopify.shopify_field(sources, "lines[1].unit_price_minor") == "line_items[1].price"
    assert shopify.shopify_field(sources, "lines[1].quantity") == "line_items[1].quantity"
    assert shopify.shopify_field(sources, "shipping_address.postal_code") == "shipping_address.zip"
    assert shopify.shopify_field(sources, "customer.phone") == "customer.phone"
    assert shopify.shopify_field(sources, "total_minor") == "total_price"


# ---------------------------------------------------------------- connections: API and CLI


async def signed_in(client, person, home: str) -> dict[str, str]:
    await sign_in(client, person)
    return {"X-CSRF-Token": session_csrf((await client.get(home)).text)}


async def test_client_admins_connect_and_deactivate_their_shop(client, world: World):
    headers = await signed_in(client, world.client_admin_a, "/portal")
    old_secret, new_secret = "shpss_" + secrets.token_hex(16), "shpss_" + secrets.token_hex(16)
    body = {"shop_domain": "https://Acme-Outdoor.myshopify.com/", "webhook_secret": old_secret}
    created = await client.post("/api/v1/shop-connections", json=body, headers=headers)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["shop_domain"] == DOMAIN and view["active"] is True and view["tenant_id"] == str(world.a.id)
    assert view["webhook_path"] == f"/hooks/shopify/{world.a.slug}"
    assert "webhook_secret" not in view and old_secret not in created.text

    replaced = await client.post(
        "/api/v1/shop-connections", json={**body, "webhook_secret": new_secret}, headers=headers
    )
    assert replaced.status_code == 200 and replaced.json()["id"] == view["id"]
    client.cookies.clear()
    assert (await deliver(client, world.a.slug, FIXTURE.read_bytes(), secret=old_secret)).status_code == 401
    assert (await deliver(client, world.a.slug, FIXTURE.read_bytes(), secret=new_secret)).status_code == 201

    headers = await signed_in(client, world.client_admin_a, "/portal")
    listed = (await client.get("/api/v1/shop-connections", headers=headers)).json()
    assert [c["id"] for c in listed] == [view["id"]]
    gone = await client.delete(f"/api/v1/shop-connections/{view['id']}", headers=headers)
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert (await client.get(f"/api/v1/shop-connections/{view['id']}", headers=headers)).json()[
        "active"
    ] is False
    client.cookies.clear()
    again = await deliver(client, world.a.slug, encoded(payload(id=1234)), secret=new_secret)
    assert again.status_code == 401


async def test_only_administrators_manage_connections(client, world: World):
    body = {"shop_domain": DOMAIN, "webhook_secret": SECRET}
    as_key = await client.post("/api/v1/shop-connections", json=body, headers=bearer(world.key_a))
    assert as_key.status_code == 403
    assert (await client.get("/api/v1/shop-connections", headers=bearer(world.key_a))).status_code == 403
    for person, home in ((world.client_viewer_a, "/portal"), (world.lead_a, "/console")):
        headers = await signed_in(client, person, home)
        refused = await client.post(
            "/api/v1/shop-connections", json={**body, "tenant_id": str(world.a.id)}, headers=headers
        )
        assert refused.status_code == 403, (person.email, refused.text)
        client.cookies.clear()
    headers = await signed_in(client, world.admin, "/console")
    needs_tenant = await client.post("/api/v1/shop-connections", json=body, headers=headers)
    assert needs_tenant.status_code == 422 and needs_tenant.json()["errors"][0]["field"] == "tenant_id"
    made = await client.post(
        "/api/v1/shop-connections", json={**body, "tenant_id": str(world.b.id)}, headers=headers
    )
    assert made.status_code == 201 and made.json()["tenant_id"] == str(world.b.id)
    listed = await client.get(f"/api/v1/shop-connections?tenant_id={world.b.id}", headers=headers)
    assert [c["shop_domain"] for c in listed.json()] == [DOMAIN]


async def test_connection_input_is_checked(client, world: World):
    headers = await signed_in(client, world.client_admin_a, "/portal")
    bad = await client.post(
        "/api/v1/shop-connections",
        json={"shop_domain": "acme-outdoor.com", "webhook_secret": "x" * 15 + " y"},
        headers=headers,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"shop_domain", "webhook_secret"}
    short = await client.post(
        "/api/v1/shop-connections", json={"shop_domain": DOMAIN, "webhook_secret": "short"}, headers=headers
    )
    assert short.status_code == 400 and short.json()["errors"][0]["field"] == "webhook_secret"


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    # A new session has no controlling terminal, so the hidden prompt reads stdin, not /dev/tty.
    return subprocess.run(
        [sys.executable, "-m", "orderdesk.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
        start_new_session=True,
    )


@pytest.fixture
def cli_env(settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        ORDERDESK_SECRET_KEY=settings.secret_key,
        ORDERDESK_ENV="test",
    )
    return env


async def test_cli_connects_a_shop_with_the_secret_from_a_prompt(client, world: World, cli_env):
    assert run_cli("shop", "connect", "--help", env=cli_env).returncode == 0
    secret = "shpss_" + secrets.token_hex(16)
    prompted = run_cli(
        "shop", "connect", "--tenant", world.a.slug, "--domain", DOMAIN, env=cli_env, stdin=secret + "\n"
    )
    assert prompted.returncode == 0, prompted.stderr
    assert f"connected {DOMAIN} for {world.a.slug}" in prompted.stdout
    assert f"/hooks/shopify/{world.a.slug}" in prompted.stdout and secret not in prompted.stdout
    assert (await deliver(client, world.a.slug, FIXTURE.read_bytes(), secret=secret)).status_code == 201
    rotated = run_cli(
        "shop", "connect", "--tenant", world.a.slug, "--domain", DOMAIN, "--secret", SECRET, env=cli_env
    )
    assert rotated.returncode == 0 and rotated.stdout.startswith("updated the secret of")
    unknown = run_cli(
        "shop", "connect", "--tenant", "no-such-tenant", "--domain", DOMAIN, "--secret", SECRET, env=cli_env
    )
    assert unknown.returncode == 1 and unknown.stderr.strip() == "orderdesk: error: Tenant not found"
    bad = run_cli(
        "shop", "connect", "--tenant", world.a.slug, "--domain", "acme.com", "--secret", SECRET, env=cli_env
    )
    assert bad.returncode == 1 and "shop_domain must be the shop's myshopify.com domain" in bad.stderr
