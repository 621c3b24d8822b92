"""The catalog gates SKUs; the verification policy decides who verifies."""

from __future__ import annotations

import uuid

from tests.conftest import World, make_tenant
from tests.integration.test_orders_api import bearer, order_body


async def test_with_a_catalog_unknown_and_inactive_skus_are_refused(client, world: World, db):
    from orderdesk.accounts import services as accounts
    from orderdesk.tenants import services as tenants

    tenant = await make_tenant(db, "Catalog Co")
    key = (await accounts.issue_api_key(db, await tenants.system_actor(db), tenant.id, "k")).secret
    headers = bearer(key)
    assert (await client.post("/api/v1/orders", json=order_body(), headers=headers)).status_code == 201
    await client.put("/api/v1/catalog/TENT-2P", json={"name": "Tent"}, headers=headers)
    await client.put("/api/v1/catalog/MAT-1", json={"name": "Mat", "active": False}, headers=headers)
    refused = await client.post("/api/v1/orders", json=order_body(), headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "lines[1].sku", "message": "'MAT-1' is no longer sold (inactive)"}
    ]
    body = order_body()
    body["lines"][0]["sku"] = "GHOST"
    unknown = await client.post("/api/v1/orders", json=body, headers=headers)
    assert {"field": "lines[0].sku", "message": "'GHOST' is not in the catalog"} in unknown.json()["errors"]
    await client.put("/api/v1/catalog/MAT-1", json={"name": "Mat"}, headers=headers)
    assert (await client.post("/api/v1/orders", json=order_body(), headers=headers)).status_code == 201
    listed = (await client.get("/api/v1/catalog", headers=headers)).json()
    assert [i["sku"] for i in listed] == ["MAT-1", "TENT-2P"]


async def test_auto_verify_and_high_value_threshold(client, world: World):
    headers = bearer(world.key_b)
    policy_url = f"/api/v1/tenants/{world.b.id}/verification-policy"
    updated = await client.put(
        policy_url, json={"auto_verify": True, "high_value_minor": {"eur": 60000}}, headers=headers
    )
    assert updated.status_code == 403  # an API key is not an administrator
    from tests.conftest import session_csrf, sign_in

    await sign_in(client, world.client_admin_b)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/portal")).text)}
    updated = await client.put(
        policy_url, json={"auto_verify": True, "high_value_minor": {"eur": 60000}}, headers=csrf
    )
    assert updated.status_code == 200, updated.text
    client.cookies.clear()
    small = (await client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    assert small["status"] == "verified"
    big = order_body()
    big["lines"][0]["quantity"] = 3
    large = (await client.post("/api/v1/orders", json=big, headers=headers)).json()
    assert large["status"] == "awaiting_verification"
    assert {c["check"]: c["result"] for c in large["checks"]}["high_value"] == "failed"


async def test_agents_override_checks_on_the_timeline(client, world: World):
    from tests.conftest import session_csrf, sign_in

    order = (
        await client.post(
            "/api/v1/orders", json=order_body(payment_status="pending"), headers=bearer(world.key_a)
        )
    ).json()
    await sign_in(client, world.agent_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    base = f"/api/v1/orders/{order['id']}"
    passed = await client.post(
        f"{base}/checks/contact_valid", json={"resolution": "overridden"}, headers=csrf
    )
    assert passed.status_code == 409
    missing = await client.post(f"{base}/checks/horoscope", json={"resolution": "overridden"}, headers=csrf)
    assert missing.status_code == 404
    decided = await client.post(
        f"{base}/checks/payment_confirmed",
        json={"resolution": "overridden", "note": "paid by bank transfer"},
        headers=csrf,
    )
    assert decided.status_code == 200
    verified = await client.post(f"{base}/verify", headers=csrf)
    assert verified.json()["status"] == "verified"
    events = (await client.get(f"{base}/events")).json()
    decision = next(e for e in events if e["kind"] == "check_decided")
    assert decision["actor_kind"] == "staff" and decision["channel"] == "console"
    assert "paid by bank transfer" in decision["summary"]


async def test_policy_validation(client, world: World):
    from tests.conftest import session_csrf, sign_in

    await sign_in(client, world.client_admin_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/portal")).text)}
    bad = await client.put(
        f"/api/v1/tenants/{world.a.id}/verification-policy",
        json={"high_value_minor": {"ZZZ": 5}},
        headers=csrf,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "high_value_minor.ZZZ"
    foreign = await client.get(f"/api/v1/tenants/{uuid.uuid4()}/verification-policy")
    assert foreign.status_code == 404
