"""The work queue's JSON API, as staff tools call it: with a console session and its CSRF token."""

from __future__ import annotations

import datetime as dt

from orderdesk.workqueue import services as work
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import order_body

PROBLEM = "application/problem+json"


async def open_items(client, world: World, count: int) -> list[str]:
    """`count` orders of A waiting for verification, each opening a verification item."""
    ids = []
    for _ in range(count):
        made = await client.post(
            "/api/v1/orders", json=order_body(), headers={"Authorization": f"Bearer {world.key_a}"}
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    return ids


async def as_staff(client, person) -> dict[str, str]:
    client.cookies.clear()
    await sign_in(client, person)
    return {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}


async def test_an_agent_works_the_queue_through_the_api(client, world: World):
    await open_items(client, world, 3)
    headers = await as_staff(client, world.agent_a)

    first = await client.post("/api/v1/work-items/next", headers=headers)
    assert first.status_code == 200, first.text
    item = first.json()
    assert (item["status"], item["claimed_by"], item["kind"]) == (
        "claimed",
        str(world.agent_a.id),
        "verification",
    )
    assert item["tenant_name"] == "Acme Outdoor" and item["lease_expires_at"]
    # One item at a time: asking again gives the same one back.
    assert (await client.post("/api/v1/work-items/next", headers=headers)).json()["id"] == item["id"]
    assert (await client.get(f"/api/v1/work-items/{item['id']}")).json()["status"] == "claimed"
    renewed = await client.post(f"/api/v1/work-items/{item['id']}/lease", headers=headers)
    assert renewed.status_code == 200 and renewed.json()["lease_expires_at"] >= item["lease_expires_at"]

    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    snoozed = await client.post(
        f"/api/v1/work-items/{item['id']}/snooze", json={"until": until}, headers=headers
    )
    assert snoozed.status_code == 200 and snoozed.json()["status"] == "snoozed"

    second = (await client.post("/api/v1/work-items/next", headers=headers)).json()
    assert second["id"] != item["id"]
    handed = await client.post(f"/api/v1/work-items/{second['id']}/hand-back", headers=headers)
    assert handed.json()["status"] == "open" and handed.json()["claimed_by"] is None

    third = (await client.post("/api/v1/work-items/next", headers=headers)).json()
    waiting = await client.post(
        f"/api/v1/work-items/{third['id']}/wait", json={"party": "customer"}, headers=headers
    )
    assert waiting.json()["status"] == "waiting_customer" and waiting.json()["sla_running_since"] is None
    resumed = await client.post(f"/api/v1/work-items/{third['id']}/resume", headers=headers)
    assert resumed.json()["status"] == "open"

    again = (await client.post("/api/v1/work-items/next", headers=headers)).json()
    done = await client.post(
        f"/api/v1/work-items/{again['id']}/complete",
        json={"outcome": "resolved", "note": "Checked with the customer"},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["outcome"], done.json()["outcome_note"]) == (
        "done",
        "resolved",
        "Checked with the customer",
    )
    twice = await client.post(
        f"/api/v1/work-items/{again['id']}/complete", json={"outcome": "resolved"}, headers=headers
    )
    assert twice.status_code == 409 and twice.headers["content-type"].startswith(PROBLEM)
    assert twice.json()["type"] == "/problems/invalid-transition" and twice.json()["state"] == "done"


async def test_bad_input_gets_a_specific_problem(client, world: World):
    [order_id] = await open_items(client, world, 1)
    headers = await as_staff(client, world.agent_a)
    item = (await client.post("/api/v1/work-items/next", headers=headers)).json()
    wrong_outcome = await client.post(
        f"/api/v1/work-items/{item['id']}/complete", json={"outcome": "withdrawn"}, headers=headers
    )
    assert wrong_outcome.status_code == 422
    assert wrong_outcome.json()["errors"][0]["field"] == "outcome"
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    too_far = await client.post(
        f"/api/v1/work-items/{item['id']}/snooze", json={"until": far}, headers=headers
    )
    assert too_far.status_code == 422 and too_far.json()["errors"][0]["field"] == "until"
    not_a_time = await client.post(
        f"/api/v1/work-items/{item['id']}/snooze", json={"until": "tomorrow"}, headers=headers
    )
    assert not_a_time.status_code == 400 and not_a_time.json()["errors"]
    party = await client.post(
        f"/api/v1/work-items/{item['id']}/wait", json={"party": "carrier"}, headers=headers
    )
    assert party.status_code == 422 and party.json()["errors"][0]["field"] == "party"
    unknown_field = await client.post(
        f"/api/v1/work-items/{item['id']}/complete",
        json={"outcome": "resolved", "colour": 1},
        headers=headers,
    )
    assert unknown_field.status_code == 400
    bad_status = await client.get("/api/v1/work-items?status=finished")
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["field"] == "status"
    bad_cursor = await client.get("/api/v1/work-items?cursor=nonsense")
    assert bad_cursor.status_code == 422 and bad_cursor.json()["errors"][0]["field"] == "cursor"
    duplicate = await client.post(
        "/api/v1/work-items",
        json={
            "tenant_id": str(world.a.id),
            "kind": "verification",
            "title": "Call back",
            "order_number": 999999,
        },
        headers=headers,
    )
    assert duplicate.status_code == 404 and duplicate.json()["detail"] == "Order not found"
    # Nothing was lost: the item is still the agent's.
    assert (await client.get(f"/api/v1/work-items/{item['id']}")).json()["claimed_by"] == str(
        world.agent_a.id
    )
    assert order_id


async def test_list_filters_and_cursor_pagination(client, world: World):
    await open_items(client, world, 5)
    headers = await as_staff(client, world.agent_a)
    seen, cursor = [], None
    while True:
        page = await client.get(
            "/api/v1/work-items", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({i["id"] for i in seen}) == 5
    created = [i["created_at"] for i in seen]
    assert created == sorted(created, reverse=True)

    claimed = (await client.post("/api/v1/work-items/next", headers=headers)).json()
    mine = (await client.get("/api/v1/work-items?mine=true")).json()["items"]
    assert [i["id"] for i in mine] == [claimed["id"]]
    open_now = (await client.get("/api/v1/work-items?status=open&kind=verification")).json()["items"]
    assert len(open_now) == 4 and claimed["id"] not in {i["id"] for i in open_now}
    assert (await client.get("/api/v1/work-items?kind=return")).json()["items"] == []
    assert (await client.get("/api/v1/work-items?breached=true")).json()["items"] == []
    assert len((await client.get("/api/v1/work-items?breached=false")).json()["items"]) == 5
    by_order = (await client.get(f"/api/v1/work-items?order_id={claimed['order_id']}")).json()["items"]
    assert [i["id"] for i in by_order] == [claimed["id"]]
    assert (await client.get(f"/api/v1/work-items?tenant_id={world.a.id}")).status_code == 200
    foreign = await client.get(f"/api/v1/work-items?tenant_id={world.b.id}")
    assert foreign.status_code == 404
    counts = (await client.get("/api/v1/work-items/counts")).json()
    assert [(c["tenant_name"], c["kind"], c["ready"]) for c in counts] == [
        ("Acme Outdoor", "verification", 4)
    ]


async def test_nothing_ready_answers_204(client, world: World):
    headers = await as_staff(client, world.agent_a)
    nothing = await client.post("/api/v1/work-items/next", headers=headers)
    assert nothing.status_code == 204 and nothing.content == b""


async def test_only_operations_staff_may_use_it(client, world: World):
    [_] = await open_items(client, world, 1)
    key = {"Authorization": f"Bearer {world.key_a}"}
    for method, path in (
        ("GET", "/api/v1/work-items"),
        ("POST", "/api/v1/work-items/next"),
        ("GET", "/api/v1/work-notifications"),
    ):
        refused = await client.request(method, path, headers=key)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith(PROBLEM)
    client.cookies.clear()
    await sign_in(client, world.client_admin_a)
    assert (await client.get("/api/v1/work-items")).status_code == 403
    client.cookies.clear()
    assert (await client.get("/api/v1/work-items")).status_code == 401
    # A session without its CSRF token cannot change anything.
    await as_staff(client, world.agent_a)
    assert (await client.post("/api/v1/work-items/next")).status_code == 403


async def test_leads_reassign_withdraw_and_set_policies(client, world: World):
    await open_items(client, world, 2)
    agent = await as_staff(client, world.agent_a)
    item = (await client.post("/api/v1/work-items/next", headers=agent)).json()
    assert (
        await client.post(
            f"/api/v1/work-items/{item['id']}/reassign",
            json={"agent_id": str(world.agent_a.id)},
            headers=agent,
        )
    ).status_code == 403
    policy = {"time_zone": "Europe/Berlin", "targets": {"verification": {"normal": 30}}}
    refused = await client.put(f"/api/v1/tenants/{world.a.id}/sla-policy", json=policy, headers=agent)
    assert refused.status_code == 403

    lead = await as_staff(client, world.lead_a)
    moved = await client.post(
        f"/api/v1/work-items/{item['id']}/reassign", json={"agent_id": str(world.lead_a.id)}, headers=lead
    )
    assert moved.status_code == 200 and moved.json()["claimed_by"] == str(world.lead_a.id)
    stranger = await client.post(
        f"/api/v1/work-items/{item['id']}/reassign", json={"agent_id": str(world.agent_b.id)}, headers=lead
    )
    assert stranger.status_code == 422 and stranger.json()["errors"][0]["field"] == "agent_id"
    withdrawn = await client.post(
        f"/api/v1/work-items/{item['id']}/complete", json={"outcome": "withdrawn"}, headers=lead
    )
    assert withdrawn.json()["status"] == "cancelled"

    saved = await client.put(f"/api/v1/tenants/{world.a.id}/sla-policy", json=policy, headers=lead)
    assert saved.status_code == 200, saved.text
    assert saved.json()["targets"]["verification"]["normal"] == 30 and saved.json()["recomputed_items"] == 1
    assert (await client.get(f"/api/v1/tenants/{world.a.id}/sla-policy")).json()["targets"]["verification"][
        "normal"
    ] == 30
    broken = await client.put(
        f"/api/v1/tenants/{world.a.id}/sla-policy",
        json={"time_zone": "Mars/Olympus", "business_hours": {"mon": ["9-5"]}},
        headers=lead,
    )
    assert broken.status_code == 422
    assert {e["field"] for e in broken.json()["errors"]} >= {"time_zone", "business_hours.mon"}


async def test_sla_notices_through_the_api(client, db, world: World):
    await open_items(client, world, 1)
    [item] = (await client.get("/api/v1/work-items", headers=await as_staff(client, world.lead_a))).json()[
        "items"
    ]
    late = dt.datetime.fromisoformat(item["due_at"]) + dt.timedelta(minutes=1)
    await work.sweep_work_queue(db, frozenset({world.a.id}), now=late)
    headers = await as_staff(client, world.lead_a)
    [notice] = (await client.get("/api/v1/work-notifications")).json()
    assert (notice["kind"], notice["work_item_id"]) == ("breached", item["id"])
    read = await client.post(f"/api/v1/work-notifications/{notice['id']}/read", headers=headers)
    assert read.status_code == 200 and read.json()["read_at"]
    assert (await client.get("/api/v1/work-notifications")).json() == []
    assert len((await client.get("/api/v1/work-notifications?unread=false")).json()) == 1
    await as_staff(client, world.agent_a)
    assert (await client.get("/api/v1/work-notifications")).json() == []
