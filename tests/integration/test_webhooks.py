"""Outbox and webhook delivery: signed per Standard Webhooks, retried, ordered, dead-lettered, replayable."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orderdesk.core.tenancy import Scope
from orderdesk.integrations import delivery
from tests.conftest import World, make_tenant
from tests.integration.test_orders_api import bearer, order_body
from tests.support.receiver import Receiver

FAST_RETRIES = (0.05, 0.1, 0.2)


@pytest.fixture
def policy(settings) -> delivery.DeliveryPolicy:
    return delivery.DeliveryPolicy(
        retry_schedule=FAST_RETRIES, timeout_seconds=2, disable_after=dt.timedelta(days=5), allow_private=True
    )


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def receiver():
    instance = await Receiver().start()
    yield instance
    await instance.stop()


@pytest.fixture
async def tenant_key(db):
    """A fresh tenant (so other tests' events are not in the way) and its API key."""
    from orderdesk.accounts import services as accounts
    from orderdesk.tenants import services as tenants

    tenant = await make_tenant(db, "Webhook Co")
    key = await accounts.issue_api_key(db, await tenants.system_actor(db), tenant.id, "hooks")
    return tenant, bearer(key.secret)


async def register(client, headers, url, **extra) -> dict:
    response = await client.post("/api/v1/webhook-endpoints", json={"url": url, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def run_dispatch(db, http, policy, tenant, **kwargs) -> int:
    return await delivery.dispatch(
        db, http, policy, Scope(tenant_ids=frozenset({tenant.id})), budget_seconds=10, **kwargs
    )


@pytest.fixture
async def wh_client(settings):
    from litestar.testing import AsyncTestClient

    from orderdesk.app import create_app

    allowing = settings.model_copy(update={"webhooks_allow_private": True})
    async with AsyncTestClient(app=create_app(allowing)) as client:
        yield client


async def test_order_events_arrive_signed_in_order(wh_client, db, http, policy, receiver, tenant_key):
    tenant, headers = tenant_key
    endpoint = await register(wh_client, headers, receiver.url)
    order = (await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    await wh_client.post(f"/api/v1/orders/{order['id']}/verify", headers=headers)
    await run_dispatch(db, http, policy, tenant)
    types = [r.payload["type"] for r in receiver.received]
    assert types == ["order.created", "order.verification_needed", "order.verified"]
    webhook = Webhook(endpoint["secret"])
    for request in receiver.received:
        payload = webhook.verify(request.body, request.headers)  # the official package agrees
        assert request.headers["webhook-id"] == payload["id"]
        assert payload["version"] == 1 and payload["tenant_id"] == str(tenant.id)
    sequences = [r.payload["data"]["sequence"] for r in receiver.received]
    assert sequences == [1, 2, 3]
    created = receiver.received[0].payload["data"]
    assert created["order"]["status"] == "captured"  # the state right after that event
    assert receiver.received[2].payload["data"]["order"]["status"] == "verified"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(receiver.received[0].body, receiver.received[0].headers)
    log = (await wh_client.get(f"/api/v1/orders/{order['id']}/webhook-deliveries", headers=headers)).json()
    assert {d["status"] for d in log} == {"succeeded"} and len(log) == 3


async def test_failures_are_retried_with_the_same_id_then_succeed(
    wh_client, db, http, policy, receiver, tenant_key
):
    tenant, headers = tenant_key

    async def flaky(request, count):
        return (500, {}) if count <= 2 else (200, {})

    receiver.respond = flaky
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    attempts = (
        await wh_client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/attempts", headers=headers)
    ).json()
    assert [a["status_code"] for a in attempts] == [200, 500, 500]
    assert all(a["latency_ms"] >= 0 for a in attempts)


async def test_dead_letter_then_replay(wh_client, db, http, policy, receiver, tenant_key):
    tenant, headers = tenant_key
    healthy = False

    async def down(request, count):
        return (200, {}) if healthy else (503, {})

    receiver.respond = down
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    since = dt.datetime.now(dt.UTC).isoformat()
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    assert len(receiver.received) == 1 + len(FAST_RETRIES)
    dead = (
        await wh_client.get(
            f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries?status=dead", headers=headers
        )
    ).json()
    assert len(dead) == 1 and dead[0]["last_status_code"] == 503
    healthy = True
    one = await wh_client.post(f"/api/v1/webhook-deliveries/{dead[0]['id']}/replay", headers=headers)
    assert one.status_code == 202 and one.json()["status"] == "pending"
    await run_dispatch(db, http, policy, tenant)
    assert receiver.received[-1].headers["webhook-id"] == dead[0]["event_id"]
    # Replay everything failed since a time: kill it again, then bring it all back.
    healthy = False
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    healthy = True
    replayed = await wh_client.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/replay-failed", params={"since": since}, headers=headers
    )
    assert replayed.json() == {"replayed": 1}
    await run_dispatch(db, http, policy, tenant)
    statuses = {
        d["status"]
        for d in (
            await wh_client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=headers)
        ).json()
    }
    assert statuses == {"succeeded"}


async def test_410_disables_the_endpoint(wh_client, db, http, policy, receiver, tenant_key):
    tenant, headers = tenant_key

    async def gone(request, count):
        return 410, {}

    receiver.respond = gone
    endpoint = await register(wh_client, headers, receiver.url)
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    assert len(receiver.received) == 1  # nothing more once it said Gone
    state = (await wh_client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=headers)).json()
    assert state["enabled"] is False and "410" in state["disabled_reason"]


async def test_retry_after_is_honoured(wh_client, db, http, policy, receiver, tenant_key):
    tenant, headers = tenant_key

    async def busy(request, count):
        return (429, {"Retry-After": "30"}) if count == 1 else (200, {})

    receiver.respond = busy
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    assert len(receiver.received) == 1
    [pending] = (
        await wh_client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=headers)
    ).json()
    due = dt.datetime.fromisoformat(pending["next_attempt_at"])
    assert due - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=25)


async def test_ordered_endpoint_waits_for_the_earlier_event(
    wh_client, db, http, policy, receiver, tenant_key
):
    tenant, headers = tenant_key
    failures_left = 2

    async def first_fails(request, count):
        nonlocal failures_left
        if request.payload["type"] == "order.created" and failures_left:
            failures_left -= 1
            return 500, {}
        return 200, {}

    receiver.respond = first_fails
    await register(wh_client, headers, receiver.url, ordered=True)
    order = (await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    await wh_client.post(f"/api/v1/orders/{order['id']}/verify", headers=headers)
    await run_dispatch(db, http, policy, tenant)
    delivered = [r.payload["data"]["sequence"] for r in receiver.received if r.payload["type"] != "x"]
    # Two failed tries of event 1, then 1, 2, 3 in order: nothing overtook the failing event.
    assert delivered == [1, 1, 1, 2, 3]


async def test_secret_rotation_signs_with_both_during_the_overlap(
    wh_client, db, http, policy, receiver, tenant_key
):
    tenant, headers = tenant_key
    endpoint = await register(wh_client, headers, receiver.url, event_types=["endpoint.test"])
    rotated = await wh_client.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"overlap_hours": 1},
        headers=headers,
    )
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"] and new_secret.startswith("whsec_")
    test = await wh_client.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test", headers=headers)
    assert test.status_code == 202
    await run_dispatch(db, http, policy, tenant)
    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://localhost/x",
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
    ],
)
async def test_unsafe_urls_are_refused(client, world: World, url):
    response = await client.post("/api/v1/webhook-endpoints", json={"url": url}, headers=bearer(world.key_a))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "url"


async def test_unknown_event_types_are_refused(wh_client, tenant_key):
    _, headers = tenant_key
    response = await wh_client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:1/x", "event_types": ["order.teleported"]},
        headers=headers,
    )
    assert response.status_code == 422 and "order.teleported" in response.json()["errors"][0]["message"]


async def test_filters_and_other_tenants(wh_client, db, http, policy, receiver, tenant_key):
    tenant, headers = tenant_key
    other, other_headers = await _other_tenant(db)
    await register(wh_client, headers, receiver.url, event_types=["order.cancelled"])
    order = (await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    await wh_client.post("/api/v1/orders", json=order_body(), headers=other_headers)
    await wh_client.post(f"/api/v1/orders/{order['id']}/cancel", headers=headers)
    await run_dispatch(db, http, policy, tenant)
    await run_dispatch(db, http, policy, other)
    assert [r.payload["type"] for r in receiver.received] == ["order.cancelled"]
    assert receiver.received[0].payload["data"]["order"]["id"] == order["id"]


async def _other_tenant(db):
    from orderdesk.accounts import services as accounts
    from orderdesk.tenants import services as tenants

    tenant = await make_tenant(db, "Other Co")
    key = await accounts.issue_api_key(db, await tenants.system_actor(db), tenant.id, "hooks")
    return tenant, bearer(key.secret)


async def test_outbox_rows_commit_with_the_change_or_not_at_all(wh_client, db, owner_connection, tenant_key):
    tenant, headers = tenant_key
    before = await owner_connection.fetchval(
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1", tenant.id
    )
    refused = await wh_client.post("/api/v1/orders", json=order_body(currency="ZZZ"), headers=headers)
    assert refused.status_code == 422
    order = (await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    illegal = await wh_client.post(f"/api/v1/orders/{order['id']}/ship", headers=headers)
    assert illegal.status_code == 409
    after = await owner_connection.fetchval(
        "SELECT count(*) FROM outbox_events WHERE tenant_id = $1", tenant.id
    )
    assert after - before == 2  # created + verification_needed; nothing for the refused requests


async def endpoint_state(owner_connection, endpoint_id: str):
    return await owner_connection.fetchrow(
        "SELECT enabled, failing_since, disabled_reason FROM webhook_endpoints WHERE id = $1::uuid",
        endpoint_id,
    )


async def test_failing_since_marks_the_first_failure_until_a_success(
    wh_client, db, http, owner_connection, receiver, tenant_key
):
    tenant, headers = tenant_key
    healthy = False

    async def down(request, count):
        return (200, {}) if healthy else (500, {})

    receiver.respond = down
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    # One attempt per dispatch: the retry is due long after the dispatch ends.
    slow = delivery.DeliveryPolicy(
        retry_schedule=(3600, 3600), timeout_seconds=2, disable_after=dt.timedelta(days=5), allow_private=True
    )
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, slow, tenant)
    first = (await endpoint_state(owner_connection, endpoint["id"]))["failing_since"]
    assert first is not None and len(receiver.received) == 1
    # A later failure (another order's event) leaves the mark where the first one put it.
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, slow, tenant)
    assert len(receiver.received) == 2
    assert (await endpoint_state(owner_connection, endpoint["id"]))["failing_since"] == first
    healthy = True
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, slow, tenant)
    state = await endpoint_state(owner_connection, endpoint["id"])
    assert state["failing_since"] is None and state["enabled"] is True


async def test_an_endpoint_failing_for_days_is_disabled(
    wh_client, db, http, policy, owner_connection, receiver, tenant_key
):
    tenant, headers = tenant_key

    async def down(request, count):
        return 500, {}

    receiver.respond = down
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    six_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    await owner_connection.execute(
        "UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1::uuid", endpoint["id"], six_days_ago
    )
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await run_dispatch(db, http, policy, tenant)
    state = await endpoint_state(owner_connection, endpoint["id"])
    assert state["enabled"] is False
    assert state["failing_since"] == six_days_ago
    assert f"failing without a success since {six_days_ago:%Y-%m-%d %H:%M}" in state["disabled_reason"]
    assert len(receiver.received) == 1  # a disabled endpoint gets nothing more


async def test_attempts_finishing_together_settle_the_endpoint_in_their_order(
    db, http, policy, owner_connection, receiver, tenant_key, wh_client
):
    """Recording a batch of attempts ends where recording them one by one would."""
    tenant, headers = tenant_key
    endpoint = await register(wh_client, headers, receiver.url, event_types=["order.created"])
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    scope = Scope(tenant_ids=frozenset({tenant.id}))
    await delivery.fan_out(db, scope)
    first, second = await delivery.claim_due(db, scope, limit=2)
    failed = delivery.Outcome(500, 3, None, None)
    succeeded = delivery.Outcome(200, 3, None, None)
    await delivery.record_many(db, [(first, failed), (second, succeeded)], policy)
    assert (await endpoint_state(owner_connection, endpoint["id"]))["failing_since"] is None
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
    await delivery.fan_out(db, scope)
    claims = await delivery.claim_due(db, scope, limit=4)
    fresh = [c for c in claims if c.delivery_id != first.delivery_id][:2]
    before = dt.datetime.now(dt.UTC)
    await delivery.record_many(db, [(fresh[0], succeeded), (fresh[1], failed)], policy)
    failing_since = (await endpoint_state(owner_connection, endpoint["id"]))["failing_since"]
    assert failing_since is not None and failing_since >= before - dt.timedelta(seconds=1)
    attempts = await owner_connection.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1::uuid", endpoint["id"]
    )
    assert attempts == 4


async def test_a_cancelled_dispatch_hands_back_what_it_did_not_post(
    wh_client, db, http, policy, owner_connection, tenant_key
):
    """SIGTERM cancels the worker's dispatch: what was posted is recorded (once), the rest is
    released at once rather than when its lease ends. The cancellation comes at the worst
    moment, found by watching the statements rather than by timing, so that load cannot move
    it: as the transaction that records finished posts and claims the next ones commits, with
    its COMMIT on the way (whether it takes effect is then up to the database)."""
    from sqlalchemy import event

    tenant, headers = tenant_key
    receiver = await Receiver().start()
    task: asyncio.Task | None = None
    recording = False  # the transaction under way stores attempts
    claimed_then: list[int] = []  # what that transaction leased, seen just before its COMMIT

    def watch(_conn, _cursor, statement, *_args) -> None:
        nonlocal recording
        recording = recording or statement.startswith("INSERT INTO webhook_attempts")

    def committing(conn) -> None:
        nonlocal recording
        if recording and task is not None and not claimed_then:
            claimed_then.append(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM webhook_deliveries "
                    f"WHERE leased_until = now() + interval '{policy.lease.total_seconds()} seconds'"
                ).scalar()
            )
            task.cancel()  # lands on the dispatch's next await: the COMMIT's round trip
        recording = False

    def rolled_back(_conn) -> None:
        nonlocal recording
        recording = False

    engine = db.engine.sync_engine
    hooks = [
        (engine, "after_cursor_execute", watch),
        (engine, "commit", committing),
        (engine, "rollback", rolled_back),
    ]
    try:
        endpoint = await register(
            wh_client, headers, receiver.url, event_types=["order.created"], ordered=False
        )
        for _ in range(6):
            await wh_client.post("/api/v1/orders", json=order_body(), headers=headers)
        for target, name, hook in hooks:
            event.listen(target, name, hook)
        task = asyncio.create_task(run_dispatch(db, http, policy, tenant, concurrency=2))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
        for target, name, hook in hooks:
            event.remove(target, name, hook)
        # The cancelled transaction did claim deliveries (6 due, room for 2 at a time).
        assert claimed_then and claimed_then[0] >= 1
        rows = await owner_connection.fetch(
            "SELECT d.status, d.attempts, d.leased_until, "
            "(SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id) AS recorded "
            "FROM webhook_deliveries d WHERE d.endpoint_id = $1::uuid",
            endpoint["id"],
        )
        assert len(rows) == 6
        assert all(r["leased_until"] is None for r in rows), "a cancelled dispatch kept leases"
        succeeded = [r for r in rows if r["status"] == "succeeded"]
        assert succeeded and all(r["attempts"] == 1 and r["recorded"] == 1 for r in succeeded)
        assert len(succeeded) < 6
        # The next dispatch (not the lease's end, 30 s away) delivers the rest.
        await run_dispatch(db, http, policy, tenant)
        statuses = await owner_connection.fetch(
            "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1::uuid", endpoint["id"]
        )
        assert {r["status"] for r in statuses} == {"succeeded"}
    finally:
        for target, name, hook in hooks:
            if event.contains(target, name, hook):
                event.remove(target, name, hook)
        await receiver.stop()
