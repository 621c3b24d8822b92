"""The public tracking page: signed links, lookups, uniform answers, throttling, nothing
internal on show, customer messages into the order's conversation, return requests."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.comms.models import Conversation, Message
from orderdesk.core.tenancy import Scope
from orderdesk.orders import services as orders
from orderdesk.orders.models import OrderEvent
from orderdesk.orders.states import Action, HoldReason
from orderdesk.tracking import links
from orderdesk.tracking import services as tracking
from orderdesk.tracking.models import TrackingLookupFailure
from orderdesk.workqueue.models import WorkItem, WorkItemKind
from tests.conftest import World
from tests.integration.test_orders_api import bearer, order_body

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def link_path(settings, tenant_id, order_id, **kwargs) -> str:
    return links.tracking_path(
        settings.secret_key, uuid.UUID(str(tenant_id)), uuid.UUID(str(order_id)), **kwargs
    )


async def new_order(client, key: str, **changes) -> dict:
    created = await client.post("/api/v1/orders", json=order_body(**changes), headers=bearer(key))
    assert created.status_code == 201, created.text
    return created.json()


async def delivered_order(client, key: str, *, delivered_at: dt.datetime | None = None, **changes) -> dict:
    """An order of the key's tenant, verified, shipped with DHL and delivered."""
    headers = bearer(key)
    warehouse = await client.post(
        "/api/v1/warehouses",
        json={"code": f"WH-{uuid.uuid4().hex[:6]}", "name": "Main", "country": "DE"},
        headers=headers,
    )
    assert warehouse.status_code == 201, warehouse.text
    warehouse_id = warehouse.json()["id"]
    stocked = await client.post(
        f"/api/v1/warehouses/{warehouse_id}/stock",
        json={"updates": [{"sku": "TENT-2P", "on_hand": 10}, {"sku": "MAT-1", "on_hand": 10}]},
        headers=headers,
    )
    assert stocked.status_code == 200, stocked.text
    order = await new_order(client, key, **changes)
    verified = await client.post(f"/api/v1/orders/{order['id']}/verify", headers=headers)
    assert verified.json()["status"] == "allocated", verified.text
    shipment = await client.post(
        f"/api/v1/orders/{order['id']}/shipments",
        json={
            "warehouse_id": warehouse_id,
            "carrier": "DHL",
            "tracking_number": "00340434161234567890",
            "lines": [{"line_no": 1, "quantity": 2}, {"line_no": 2, "quantity": 1}],
        },
        headers=headers,
    )
    assert shipment.status_code == 201, shipment.text
    when = delivered_at or dt.datetime.now(dt.UTC)
    for n, status in enumerate(("in_transit", "delivered")):
        scan = await client.post(
            f"/api/v1/shipments/{shipment.json()['id']}/tracking-events",
            json={
                "event_id": f"scan-{n}",
                "status": status,
                "location": "Berlin hub",
                "description": "INTERNAL-CARRIER-DESCRIPTION",
                "occurred_at": (when - dt.timedelta(hours=1 - n)).isoformat(),
            },
            headers=headers,
        )
        assert scan.status_code == 201, scan.text
    return (await client.get(f"/api/v1/orders/{order['id']}", headers=headers)).json()


async def form_token(client, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


async def lookup(client, slug: str, number, proof: str, token: str):
    return await client.post(
        f"/track/{slug}",
        data={"number": str(number), "email_or_postal_code": proof, "_csrf": token},
        follow_redirects=False,
    )


@pytest.fixture
async def forget_unknown_address(owner_connection):
    """Test clients have no IP address, so their lookups share the 'unknown' bucket; a test
    that fills it empties it again for the others."""
    yield
    await owner_connection.execute("DELETE FROM tracking_lookup_failures WHERE subject = 'address:unknown'")


# ---------------------------------------------------------------- the signed link


async def test_a_signed_link_shows_progress_parcels_and_promise_in_customer_words(
    client, settings, world: World
):
    promised = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    order = await delivered_order(client, world.key_a, deliver_by=promised.isoformat())
    page = await client.get(link_path(settings, world.a.id, order["id"]))
    assert page.status_code == 200, page.text
    html = page.text
    assert f"#{order['number']}" in html
    assert 'data-testid="headline">Delivered<' in html
    # The day as the tenant's customers see it: in the tenant's time zone, not the server's.
    local = promised.astimezone(ZoneInfo(world.a.time_zone))
    assert f"Promised by {local:%a} {local.day} {local:%b %Y}" in html
    # The parcel with its carrier link (DHL's public page for the number, no Referer sent).
    assert "https://www.dhl.com/global-en/home/tracking.html?tracking-id=00340434161234567890" in html
    assert 'rel="noopener noreferrer"' in html
    assert "Berlin hub" in html and "In transit" in html
    # Steps in customer words, internal ones folded together.
    for said in ("Order placed", "Order confirmed", "Being prepared", "Shipped", "Delivered"):
        assert said in html
    assert html.count(">Being prepared<") == 1
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_nothing_internal_is_shown(client, db, settings, world: World):
    order = await new_order(
        client,
        world.key_a,
        payment_status="pending",
        notes="INTERNAL-NOTE: customer shouted at agent",
    )
    other = await new_order(client, world.key_a, customer={"name": "Otto Other", "email": "otto@example.com"})
    foreign = await new_order(
        client, world.key_b, customer={"name": "Bea Borealis", "email": "bea@example.com"}
    )
    agent = Actor(
        kind=ActorKind.STAFF,
        id=world.agent_a.id,
        display_name="Agent Smithers-Q",
        tenant_ids=frozenset({world.a.id}),
    )
    await orders.perform_action(
        db,
        agent,
        uuid.UUID(order["id"]),
        Action.PLACE_HOLD,
        hold_reason=HoldReason.FRAUD_REVIEW,
        note="HOLD-NOTE: card used in three countries",
    )
    failed_check = next(c for c in order["checks"] if c["result"] == "failed")
    page = await client.get(link_path(settings, world.a.id, order["id"]))
    assert page.status_code == 200
    html = page.text
    assert "Paused" in html and "Your order is being reviewed" in html
    for secret in (
        "INTERNAL-NOTE",
        "HOLD-NOTE",
        "fraud",
        "Fraud",
        "Agent Smithers-Q",
        failed_check["detail"],
        "payment_confirmed",
        "awaiting_verification",
        "A sync",  # the API key's name, the actor of the order's creation
        "Otto Other",
        str(other["id"]),
        "Bea Borealis",
        str(foreign["id"]),
        world.b.name,
        "Unter den Linden",  # the street: only city and country are shown
        order["customer_email"],
    ):
        assert secret not in html, secret


async def test_carrier_scan_descriptions_from_client_systems_are_not_shown(client, settings, world: World):
    order = await delivered_order(client, world.key_a)
    html = (await client.get(link_path(settings, world.a.id, order["id"]))).text
    assert "INTERNAL-CARRIER-DESCRIPTION" not in html and "Delivered" in html


async def test_a_tampered_foreign_or_made_up_link_answers_like_a_missing_one(client, settings, world: World):
    order = await new_order(client, world.key_a)
    foreign = await new_order(client, world.key_b)
    good = link_path(settings, world.a.id, order["id"])
    token = good.removeprefix(links.PATH_PREFIX)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_key = links.sign(
        "another-secret-" + "y" * 32,
        world.a.id,
        uuid.UUID(order["id"]),
        dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )
    # Signed by us, but naming B's order under A: the scoped lookup finds nothing.
    crossed = link_path(settings, world.a.id, foreign["id"])
    answers = [
        await client.get(links.PATH_PREFIX + flipped),
        await client.get(links.PATH_PREFIX + other_key),
        await client.get(crossed),
        await client.get(links.PATH_PREFIX + "not-a-token"),
        await client.get(link_path(settings, world.a.id, uuid.uuid4())),
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert foreign["customer_email"] not in answers[2].text
    assert (await client.get(good)).status_code == 200


async def test_an_expired_link_offers_a_new_lookup(client, settings, world: World):
    order = await new_order(client, world.key_a)
    old = link_path(
        settings,
        world.a.id,
        order["id"],
        lifetime=dt.timedelta(days=1),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
    )
    page = await client.get(old)
    assert page.status_code == 410
    assert f'href="/track/{world.a.slug}"' in page.text
    assert f"#{order['number']}" not in page.text


# ---------------------------------------------------------------- lookup by number


async def test_lookup_by_number_and_email_or_postal_code_opens_the_order(client, world: World):
    order = await new_order(client, world.key_a)
    token = await form_token(client, f"/track/{world.a.slug}")
    for proof in (order["customer_email"].upper(), " 10117 ", "10-117"):
        found = await lookup(client, world.a.slug, f"#{order['number']}", proof, token)
        assert found.status_code == 303, (proof, found.text)
        target = found.headers["location"]
        assert target.startswith(links.PATH_PREFIX)
        page = await client.get(target)
        assert page.status_code == 200 and f"#{order['number']}" in page.text


async def test_wrong_number_wrong_email_and_another_tenants_order_get_one_answer(
    client, settings, world: World, forget_unknown_address
):
    mine = await new_order(client, world.key_a)
    theirs = await new_order(client, world.key_b)
    token = await form_token(client, f"/track/{world.a.slug}")
    answers = [
        await lookup(client, world.a.slug, 999_999_999, mine["customer_email"], token),  # wrong number
        await lookup(client, world.a.slug, mine["number"], "someone.else@example.com", token),  # wrong email
        await lookup(client, world.a.slug, mine["number"], "99999", token),  # wrong postal code
        # B's order, with B's customer's email, asked at A's page.
        await lookup(client, world.a.slug, theirs["number"], theirs["customer_email"], token),
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1, "the answers differ"
    assert tracking.NO_MATCH.split(".")[0] in answers[0].text
    assert mine["customer_email"] not in answers[0].text


async def test_a_miss_runs_the_same_statements_whichever_input_was_wrong(db, world: World, client):
    """No early return: a wrong number and a wrong email take the same path through the database."""
    order = await new_order(client, world.key_a)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    async def statements_of(number, proof, address) -> list[str]:
        statements.clear()
        with pytest.raises(tracking.NotFound):
            await tracking.lookup_order(db, "k" * 40, world.a.slug, str(number), proof, address=address)
        return list(statements)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        wrong_number = await statements_of(987_654_321, order["customer_email"], "198.51.100.10")
        wrong_email = await statements_of(order["number"], "nobody@example.com", "198.51.100.11")
        wrong_postal = await statements_of(order["number"], "99999", "198.51.100.12")
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert wrong_number == wrong_email == wrong_postal
    assert any("orders" in s for s in wrong_number)


async def test_malformed_input_is_refused_field_by_field_and_not_counted(client, world: World):
    token = await form_token(client, f"/track/{world.a.slug}")
    answer = await lookup(client, world.a.slug, "order twelve", "!!", token)
    assert answer.status_code == 422
    assert "Enter the order number from your confirmation" in answer.text
    assert "Enter the email address you ordered with, or the postal code" in answer.text
    assert 'value="order twelve"' in answer.text  # kept, so it can be corrected


async def test_lookup_without_the_csrf_cookie_is_refused(client, world: World):
    order = await new_order(client, world.key_a)
    answer = await lookup(
        client, world.a.slug, order["number"], order["customer_email"], "forged-token-" + "x" * 30
    )
    assert answer.status_code == 403


async def test_an_unknown_tenant_page_is_missing(client):
    assert (await client.get("/track/no-such-shop")).status_code == 404


# ---------------------------------------------------------------- throttling


async def test_guessing_one_order_number_is_throttled_and_uniform_even_for_a_missing_number(
    client, settings, world: World, forget_unknown_address
):
    order = await new_order(client, world.key_a)
    token = await form_token(client, f"/track/{world.a.slug}")
    allowed = next(n for kind, _w, n in tracking.LOOKUP_LIMITS if kind == "order")
    for number in (order["number"], 987_000_000 + uuid.uuid4().int % 1000):
        answers = [
            await lookup(client, world.a.slug, number, f"guess{i}@example.com", token)
            for i in range(allowed + 3)
        ]
        assert [a.status_code for a in answers] == [404] * allowed + [429] * 3
        assert len({a.text for a in answers[:allowed]}) == 1
        assert len({a.text for a in answers[allowed:]}) == 1
        assert int(answers[-1].headers["retry-after"]) > 0
    # Throttled means throttled: even the right email waits now.
    right = await lookup(client, world.a.slug, order["number"], order["customer_email"], token)
    assert right.status_code == 429
    # The signed link from the customer's email is not throttled.
    assert (await client.get(link_path(settings, world.a.id, order["id"]))).status_code == 200


async def test_a_scripted_sweep_over_numbers_is_throttled_per_address(
    client, world: World, forget_unknown_address, owner_connection
):
    await owner_connection.execute("DELETE FROM tracking_lookup_failures WHERE subject = 'address:unknown'")
    token = await form_token(client, f"/track/{world.a.slug}")
    allowed = next(n for kind, _w, n in tracking.LOOKUP_LIMITS if kind == "address")
    base = 500_000_000 + uuid.uuid4().int % 1_000_000
    answers = [
        await lookup(client, world.a.slug, base + i, f"who{i}@example.com", token) for i in range(allowed + 5)
    ]
    assert [a.status_code for a in answers] == [404] * allowed + [429] * 5
    assert len({a.text for a in answers[:allowed]}) == 1
    assert len({a.text for a in answers[allowed:]}) == 1


async def test_a_burst_of_parallel_guesses_cannot_slip_past_the_count(db, client, world: World):
    import asyncio

    order = await new_order(client, world.key_a)
    allowed = next(n for kind, _w, n in tracking.LOOKUP_LIMITS if kind == "order")

    async def guess(i: int) -> str:
        try:
            await tracking.lookup_order(
                db,
                "k" * 40,
                world.a.slug,
                str(order["number"]),
                f"burst{i}@example.com",
                address=f"192.0.2.{100 + i}",
            )
        except tracking.NotFound:
            return "miss"
        except tracking.Throttled:
            return "throttled"
        return "found"

    outcomes = await asyncio.gather(*(guess(i) for i in range(allowed * 3)))
    assert sorted(outcomes) == ["miss"] * allowed + ["throttled"] * (allowed * 2)


async def test_address_limits_hold_per_address_and_ipv6_per_slash_64(db, client, world: World):
    order = await new_order(client, world.key_a)
    allowed = next(n for kind, _w, n in tracking.LOOKUP_LIMITS if kind == "address")
    prefix = f"2001:db8:{uuid.uuid4().int % 65535:x}:1::"
    for i in range(allowed):
        with pytest.raises(tracking.NotFound):
            # Different numbers, so only the address limit applies.
            await tracking.lookup_order(
                db, "k" * 40, world.a.slug, str(700_000_000 + i), "x@example.com", address=f"{prefix}{i + 1}"
            )
    with pytest.raises(tracking.Throttled):
        await tracking.lookup_order(
            db, "k" * 40, world.a.slug, str(order["number"]), order["customer_email"], address=f"{prefix}ffff"
        )
    # Another address is not affected.
    path = await tracking.lookup_order(
        db, "k" * 40, world.a.slug, str(order["number"]), order["customer_email"], address="192.0.2.44"
    )
    assert path.startswith(links.PATH_PREFIX)


async def test_a_success_forgets_earlier_misses_of_that_order(db, client, world: World):
    order = await new_order(client, world.key_a)
    for _ in range(4):
        with pytest.raises(tracking.NotFound):
            await tracking.lookup_order(
                db, "k" * 40, world.a.slug, str(order["number"]), "typo@example.com", address="192.0.2.50"
            )
    await tracking.lookup_order(
        db, "k" * 40, world.a.slug, str(order["number"]), order["customer_email"], address="192.0.2.50"
    )
    async with db.transaction(Scope()) as session:
        left = await session.scalar(
            select(TrackingLookupFailure.id).where(
                TrackingLookupFailure.subject == f"order:{world.a.id}:{order['number']}"
            )
        )
    assert left is None


# ---------------------------------------------------------------- messages


async def test_a_message_goes_into_the_orders_conversation_timeline_and_work_queue(
    client, db, settings, world: World
):
    order = await new_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    page = await client.get(path)
    token, nonce = CSRF.search(page.text).group(1), NONCE.search(page.text).group(1)
    sent = await client.post(
        f"{path}/messages",
        data={"body": "Can you deliver to my neighbour at no. 3?", "_csrf": token, "nonce": nonce},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    # The same form again (a double click) is one message.
    again = await client.post(
        f"{path}/messages",
        data={"body": "Can you deliver to my neighbour at no. 3?", "_csrf": token, "nonce": nonce},
        follow_redirects=False,
    )
    assert again.status_code == 303
    shown = await client.get(sent.headers["location"])
    assert "your message has been sent" in shown.text
    assert "Can you deliver to my neighbour at no. 3?" in shown.text
    order_id = uuid.UUID(order["id"])
    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        conversation = await session.scalar(select(Conversation).where(Conversation.order_id == order_id))
        messages = list(
            await session.scalars(select(Message).where(Message.conversation_id == conversation.id))
        )
        kinds = list(await session.scalars(select(OrderEvent.kind).where(OrderEvent.order_id == order_id)))
        item = await session.scalar(
            select(WorkItem).where(
                WorkItem.conversation_id == conversation.id, WorkItem.kind == WorkItemKind.CUSTOMER_MESSAGE
            )
        )
    assert [m.text_body for m in messages] == ["Can you deliver to my neighbour at no. 3?"]
    assert messages[0].channel.value == "tracking" and messages[0].direction.value == "in"
    assert kinds.count("message_received") == 1
    assert item is not None and item.order_id == order_id and item.status.value == "open"


async def test_a_second_message_joins_the_same_conversation(client, db, settings, world: World):
    order = await new_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    for body in ("First question", "Second question"):
        page = await client.get(path)
        sent = await client.post(
            f"{path}/messages",
            data={
                "body": body,
                "_csrf": CSRF.search(page.text).group(1),
                "nonce": NONCE.search(page.text).group(1),
            },
            follow_redirects=False,
        )
        assert sent.status_code == 303
    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        conversations = list(
            await session.scalars(select(Conversation).where(Conversation.order_id == uuid.UUID(order["id"])))
        )
    assert len(conversations) == 1 and conversations[0].message_count == 2


async def test_an_empty_or_forged_message_is_refused(client, db, settings, world: World):
    order = await new_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    token = await form_token(client, path)
    empty = await client.post(f"{path}/messages", data={"body": "   ", "_csrf": token})
    assert empty.status_code == 422 and "Write your message first" in empty.text
    forged = await client.post(f"{path}/messages", data={"body": "hello", "_csrf": "x" * 43})
    assert forged.status_code == 403
    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        assert (
            await session.scalar(
                select(Conversation.id).where(Conversation.order_id == uuid.UUID(order["id"]))
            )
            is None
        )


async def test_a_signed_in_agent_can_use_the_public_forms_too(client, settings, world: World):
    from tests.conftest import sign_in

    await sign_in(client, world.agent_a)
    order = await new_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    token = await form_token(client, path)
    sent = await client.post(
        f"{path}/messages", data={"body": "From a shared computer", "_csrf": token}, follow_redirects=False
    )
    assert sent.status_code == 303


# ---------------------------------------------------------------- returns


async def test_a_return_is_offered_only_once_delivered(client, settings, world: World):
    order = await new_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    page = await client.get(path)
    assert "once your order has been delivered" in page.text
    assert 'data-testid="return-form"' not in page.text
    asked = await client.post(
        f"{path}/returns",
        data={"_csrf": CSRF.search(page.text).group(1), "reason": "damaged", "quantity_1": "1"},
    )
    assert asked.status_code == 409
    assert "once your order has been delivered" in asked.text


async def test_a_delivered_order_takes_a_return_request_through_the_returns_service(
    client, db, settings, world: World
):
    order = await delivered_order(client, world.key_a)
    path = link_path(settings, world.a.id, order["id"])
    page = await client.get(path)
    assert 'data-testid="return-form"' in page.text and "You can ask for a return until" in page.text
    token = CSRF.search(page.text).group(1)
    too_many = await client.post(
        f"{path}/returns", data={"_csrf": token, "reason": "damaged", "quantity_2": "5"}
    )
    assert too_many.status_code == 422 and "You can return at most 1 of this item" in too_many.text
    nothing = await client.post(
        f"{path}/returns", data={"_csrf": token, "reason": "damaged", "quantity_1": "0"}
    )
    assert nothing.status_code == 422 and "Choose at least one item to return" in nothing.text
    asked = await client.post(
        f"{path}/returns",
        data={"_csrf": token, "reason": "damaged", "quantity_1": "1", "note": "Pole snapped"},
        follow_redirects=False,
    )
    assert asked.status_code == 303, asked.text
    shown = await client.get(asked.headers["location"])
    assert f"RMA-{order['number']}-1" in shown.text and "Waiting for our answer" in shown.text
    assert "Your return is in progress" in shown.text
    assert 'data-testid="return-form"' not in shown.text
    returns = (await client.get(f"/api/v1/orders/{order['id']}/returns", headers=bearer(world.key_a))).json()
    assert returns[0]["channel"] == "tracking" and returns[0]["requested_by"] == order["customer_name"]
    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        item = await session.scalar(
            select(WorkItem).where(
                WorkItem.order_id == uuid.UUID(order["id"]), WorkItem.kind == WorkItemKind.RETURN
            )
        )
    assert item is not None


async def test_no_return_after_the_window(client, db, settings, world: World):
    from orderdesk.fulfillment.policy import FulfillmentPolicy, set_policy
    from orderdesk.tenants.services import system_actor

    await set_policy(db, await system_actor(db), world.a.id, FulfillmentPolicy(return_window_days=2))
    order = await delivered_order(
        client, world.key_a, delivered_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    )
    path = link_path(settings, world.a.id, order["id"])
    page = await client.get(path)
    assert "The return period ended on" in page.text
    assert 'data-testid="return-form"' not in page.text
    asked = await client.post(
        f"{path}/returns",
        data={"_csrf": CSRF.search(page.text).group(1), "reason": "damaged", "quantity_1": "1"},
    )
    assert asked.status_code == 409 and "The return window of 2 days ended" in asked.text


# ---------------------------------------------------------------- the link for emails, from the CLI


async def test_the_cli_prints_a_link_that_opens_the_order(client, settings, world: World):
    from tests.integration.test_cli import run_cli

    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ORDERDESK_SECRET_KEY": settings.secret_key,
        "ORDERDESK_ENV": "test",
    }
    order = await new_order(client, world.key_a)
    args = ["tracking", "link", "--tenant", world.a.slug, "--order", str(order["number"])]
    printed = run_cli(*args, "--base-url", "https://desk.example.com", "--days", "3", env=env)
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith("https://desk.example.com/track/o/")
    page = await client.get(url.removeprefix("https://desk.example.com"))
    assert page.status_code == 200 and f"#{order['number']}" in page.text

    missing = run_cli(
        "tracking",
        "link",
        "--tenant",
        world.a.slug,
        "--order",
        "99999999",
        "--base-url",
        "https://x.example",
        env=env,
    )
    assert missing.returncode == 1 and missing.stderr.strip() == "orderdesk: error: Order not found"
    bad_url = run_cli(*args, "--base-url", "desk.example.com", env=env)
    assert bad_url.returncode == 1 and "base_url must start with https://" in bad_url.stderr


async def test_the_page_shows_only_what_the_customer_and_the_shop_said_to_each_other(
    client, db, settings, world: World
):
    from orderdesk.comms import services as comms
    from orderdesk.comms.models import Direction, MessageChannel
    from orderdesk.orders.models import Order

    order = await new_order(client, world.key_a)
    customer = order["customer_email"]
    agent = Actor(
        kind=ActorKind.STAFF,
        id=world.agent_a.id,
        display_name="Agent Smithers-Q",
        tenant_ids=frozenset({world.a.id}),
    )
    said = [
        (Direction.INBOUND, MessageChannel.EMAIL, customer, [], "CUSTOMER-ASKED where is it"),
        (Direction.INBOUND, MessageChannel.EMAIL, "ops@client.example", [], "CLIENT-STAFF-SAID hold it back"),
        (
            Direction.OUTBOUND,
            MessageChannel.EMAIL,
            None,
            [{"kind": "to", "address": customer}],
            "SHOP-ANSWERED on its way",
        ),
        (
            Direction.OUTBOUND,
            MessageChannel.EMAIL,
            None,
            [{"kind": "to", "address": "ops@client.example"}],
            "TO-CLIENT-STAFF ok",
        ),
        (Direction.OUTBOUND, MessageChannel.NOTE, None, [], "NOTE-INTERNAL customer is difficult"),
    ]
    async with db.transaction(agent.scope) as session:
        row = await session.scalar(select(Order).where(Order.id == uuid.UUID(order["id"])))
        conversation = await comms.start_conversation_in(
            session, world.a.id, channel=MessageChannel.EMAIL, order=row, customer_email=customer
        )
        for direction, channel, sender, recipients, text in said:
            await comms.append_message_in(
                session,
                agent,
                conversation,
                comms.MessageDraft(
                    direction=direction,
                    channel=channel,
                    created_by=agent.display_name,
                    sender_address=sender,
                    recipients=recipients,
                    text_body=text,
                    summary=text,
                ),
            )
    html = (await client.get(link_path(settings, world.a.id, order["id"]))).text
    assert "CUSTOMER-ASKED" in html and "SHOP-ANSWERED" in html
    assert html.index("CUSTOMER-ASKED") < html.index("SHOP-ANSWERED")
    for hidden in (
        "CLIENT-STAFF-SAID",
        "TO-CLIENT-STAFF",
        "NOTE-INTERNAL",
        "Agent Smithers-Q",
        "ops@client.example",
    ):
        assert hidden not in html, hidden
    assert f"<strong>{world.a.name}</strong>" in html


async def test_the_page_wears_the_tenants_logo_and_accent(client, db, settings, world: World):
    from orderdesk.tenants import branding
    from orderdesk.tenants.services import system_actor

    system = await system_actor(db)
    await branding.set_accent_colour(db, system, world.a.id, "#f2c94c")
    await branding.set_logo(db, system, world.a.id, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")
    order = await new_order(client, world.key_a)
    html = (await client.get(link_path(settings, world.a.id, order["id"]))).text
    logo = re.search(r'<img class="logo" src="([^"]+)" alt="([^"]+)"', html)
    assert logo and logo.group(2) == world.a.name
    # A light accent gets dark text on it.
    assert "--accent: #f2c94c; --on-accent: #1d2430;" in html
    # The logo is public: a customer's browser fetches it without a session.
    client.cookies.clear()
    image = await client.get(logo.group(1))
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/png")
    lookup_page = await client.get(f"/track/{world.a.slug}")
    assert logo.group(1) in lookup_page.text
