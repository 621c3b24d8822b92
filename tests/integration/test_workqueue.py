"""The work queue on real PostgreSQL: items from order events, SLA, Get next, leases, concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import StaffRole
from orderdesk.core.db import Database, make_engine
from orderdesk.core.errors import Conflict, InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel, CheckResolution
from orderdesk.orders.schemas import OrderCreate
from orderdesk.orders.states import Action, HoldReason
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkClaim, WorkItem
from orderdesk.workqueue.policies import priority_key
from orderdesk.workqueue.schemas import WorkItemCreate
from orderdesk.workqueue.states import WorkItemKind, WorkOutcome
from tests.conftest import make_staff, make_tenant
from tests.integration.test_orders_api import order_body

MINUTE = dt.timedelta(minutes=1)

# Every hour of every day, so that due times in these tests do not depend on when they run.
ROUND_THE_CLOCK = {
    "time_zone": "Europe/Berlin",
    "business_hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
}


def staff(person, role: StaffRole, *tenant_rows) -> Actor:
    return Actor(
        kind=ActorKind.STAFF,
        id=person.id,
        display_name=f"{role.value} {person.email[:8]}",
        tenant_ids=frozenset(t.id for t in tenant_rows),
        staff_role=role,
    )


async def capture(db, tenant, **changes) -> dict:
    system = await tenants.system_actor(db)
    body = order_body(tenant_id=str(tenant.id), **changes)
    result = await orders.capture_order(db, system, OrderCreate.model_validate(body), channel=Channel.API)
    return result.body


async def items_of(db, tenant, order_id=None) -> list[WorkItem]:
    async with db.transaction(Scope(tenant_ids=frozenset({tenant.id}))) as session:
        query = select(WorkItem).where(WorkItem.tenant_id == tenant.id)
        if order_id:
            query = query.where(WorkItem.order_id == uuid.UUID(str(order_id)))
        return list((await session.scalars(query.order_by(WorkItem.created_at))).all())


async def claims_of(db, tenant) -> list[WorkClaim]:
    async with db.transaction(Scope(tenant_ids=frozenset({tenant.id}))) as session:
        return list((await session.scalars(select(WorkClaim).where(WorkClaim.tenant_id == tenant.id))).all())


@pytest.fixture
async def team(db):
    """One tenant on a 24/7 policy, two agents, a lead, and an agent of another tenant."""
    tenant = await make_tenant(db, "Queue Co")
    other = await make_tenant(db, "Elsewhere Ltd")
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    agent1 = staff(await make_staff(db, StaffRole.AGENT, tenant), StaffRole.AGENT, tenant)
    agent2 = staff(await make_staff(db, StaffRole.AGENT, tenant), StaffRole.AGENT, tenant)
    lead = staff(await make_staff(db, StaffRole.LEAD, tenant), StaffRole.LEAD, tenant)
    outsider = staff(await make_staff(db, StaffRole.AGENT, other), StaffRole.AGENT, other)
    return type(
        "Team",
        (),
        dict(
            tenant=tenant,
            other=other,
            agent1=agent1,
            agent2=agent2,
            lead=lead,
            outsider=outsider,
            system=system,
        ),
    )


# ---------------------------------------------------------------- items from order events


async def test_an_order_waiting_for_verification_opens_one_item(db, team):
    order = await capture(db, team.tenant, payment_status="pending")
    [item] = await items_of(db, team.tenant, order["id"])
    assert item.kind is WorkItemKind.VERIFICATION and item.status.value == "open"
    assert item.order_number == order["number"] and "payment confirmed" in item.title
    assert item.value_minor == order["total_minor"] and item.currency == "EUR"
    # Default target for a normal verification: 240 business minutes, here around the clock.
    assert item.sla_target_seconds == 240 * 60
    assert item.due_at - item.created_at == dt.timedelta(minutes=240)
    assert item.at_risk_at - item.created_at == dt.timedelta(minutes=192)


async def test_verifying_an_unheld_item_finishes_it(db, team):
    order = await capture(db, team.tenant, payment_status="pending")
    await orders.decide_check(
        db,
        team.system,
        uuid.UUID(order["id"]),
        "payment_confirmed",
        CheckResolution.OVERRIDDEN,
        "paid by invoice",
    )
    await orders.perform_action(db, team.system, uuid.UUID(order["id"]), Action.VERIFY)
    [item] = await items_of(db, team.tenant, order["id"])
    assert item.status.value == "done" and item.outcome is WorkOutcome.RESOLVED_ELSEWHERE


async def test_verifying_a_held_item_leaves_it_for_its_agent(db, team):
    order = await capture(db, team.tenant)
    claimed = await work.claim_next_work_item(db, team.agent1)
    assert claimed.order_id == uuid.UUID(order["id"])
    await orders.perform_action(db, team.agent1, claimed.order_id, Action.VERIFY)
    item = await work.get_work_item(db, team.agent1, claimed.id)
    assert item.status == "claimed" and item.cause_resolved_at is not None
    done = await work.complete_work_item(db, team.agent1, item.id, WorkOutcome.RESOLVED, "verified by phone")
    assert (done.status, done.outcome, done.outcome_note) == ("done", "resolved", "verified by phone")
    [claim] = await claims_of(db, team.tenant)
    assert claim.release_reason == "done" and claim.released_at is not None


async def test_holds_open_exceptions_and_releases_settle_them(db, team):
    order = await capture(db, team.tenant, payment_status="paid")
    order_id = uuid.UUID(order["id"])
    await orders.perform_action(
        db, team.system, order_id, Action.PLACE_HOLD, hold_reason=HoldReason.ADDRESS_PROBLEM
    )
    await orders.perform_action(
        db, team.system, order_id, Action.PLACE_HOLD, hold_reason=HoldReason.FRAUD_REVIEW
    )
    exceptions = [i for i in await items_of(db, team.tenant, order_id) if i.kind is WorkItemKind.EXCEPTION]
    assert sorted(i.cause for i in exceptions) == ["hold:address_problem", "hold:fraud_review"]
    await orders.perform_action(
        db, team.system, order_id, Action.RELEASE_HOLD, hold_reason=HoldReason.ADDRESS_PROBLEM
    )
    by_cause = {i.cause: i for i in await items_of(db, team.tenant, order_id)}
    assert by_cause["hold:address_problem"].status.value == "done"
    assert by_cause["hold:fraud_review"].status.value == "open"
    # A second hold for the same reason later opens a fresh item.
    await orders.perform_action(
        db, team.system, order_id, Action.PLACE_HOLD, hold_reason=HoldReason.ADDRESS_PROBLEM
    )
    causes = Counter(i.cause for i in await items_of(db, team.tenant, order_id))
    assert causes["hold:address_problem"] == 2


async def test_cancelling_the_order_cancels_its_items_and_releases_claims(db, team):
    order = await capture(db, team.tenant, payment_status="pending")
    claimed = await work.claim_next_work_item(db, team.agent1)
    await orders.perform_action(db, team.system, uuid.UUID(order["id"]), Action.CANCEL)
    item = await work.get_work_item(db, team.agent1, claimed.id)
    assert (item.status, item.outcome, item.claimed_by) == ("cancelled", "order_cancelled", None)
    assert all(c.released_at for c in await claims_of(db, team.tenant))
    assert await work.list_my_work_items(db, team.agent1) == []


async def test_items_by_hand_link_orders_of_the_same_tenant_only(db, team):
    order = await capture(db, team.tenant)
    made = await work.create_work_item(
        db,
        team.agent1,
        WorkItemCreate(
            tenant_id=team.tenant.id,
            kind=WorkItemKind.TRACKING_FOLLOW_UP,
            title="Parcel stuck in Leipzig",
            order_number=order["number"],
        ),
    )
    assert made.order_id == uuid.UUID(order["id"]) and made.cause == "manual:tracking_follow_up"
    assert made.sla_target_seconds == 960 * 60
    with pytest.raises(Conflict):
        await work.create_work_item(
            db,
            team.agent1,
            WorkItemCreate(
                tenant_id=team.tenant.id,
                kind=WorkItemKind.TRACKING_FOLLOW_UP,
                title="again",
                order_number=order["number"],
            ),
        )
    with pytest.raises(NotFound):
        await work.create_work_item(
            db,
            team.outsider,
            WorkItemCreate(tenant_id=team.tenant.id, kind=WorkItemKind.ORDER_ENTRY, title="x"),
        )
    with pytest.raises(NotFound):
        await work.create_work_item(
            db,
            team.agent1,
            WorkItemCreate(
                tenant_id=team.tenant.id, kind=WorkItemKind.ORDER_ENTRY, title="x", order_number=999999
            ),
        )


# ---------------------------------------------------------------- SLA policy


async def test_policy_change_recomputes_open_items(db, team):
    await capture(db, team.tenant)
    [before] = await items_of(db, team.tenant)
    _policy, changed = await work.set_sla_policy(
        db,
        team.lead,
        team.tenant.id,
        {**ROUND_THE_CLOCK, "targets": {"verification": {"normal": 30}}, "client_tier": 1},
    )
    assert changed >= 1
    [after] = await items_of(db, team.tenant)
    assert after.sla_target_seconds == 30 * 60 and after.client_tier == 1
    assert after.due_at == before.sla_running_since + dt.timedelta(minutes=30)
    with pytest.raises(PermissionDenied):
        await work.set_sla_policy(db, team.agent1, team.tenant.id, ROUND_THE_CLOCK)
    with pytest.raises(ValidationFailed) as caught:
        await work.set_sla_policy(db, team.lead, team.tenant.id, {"business_hours": {"mon": ["9-5"]}})
    assert caught.value.errors[0].field == "business_hours.mon"
    with pytest.raises(NotFound):
        await work.set_sla_policy(db, team.lead, team.other.id, ROUND_THE_CLOCK)


async def test_waiting_pauses_the_clock(db, team):
    await capture(db, team.tenant)
    start = dt.datetime.now(dt.UTC)
    item = await work.claim_next_work_item(db, team.agent1, now=start)
    waiting = await work.wait_on(db, team.agent1, item.id, "customer", now=start + 30 * MINUTE)
    assert waiting.status == "waiting_customer" and waiting.due_at is None and waiting.claimed_by is None
    assert 29 * 60 <= waiting.sla_consumed_seconds <= 31 * 60
    # Nobody can take a parked item.
    assert await work.claim_next_work_item(db, team.agent2, now=start + 60 * MINUTE) is None
    resumed = await work.resume_work_item(db, team.agent2, item.id, now=start + 5 * 60 * MINUTE)
    left = dt.timedelta(seconds=resumed.sla_target_seconds - resumed.sla_consumed_seconds)
    assert resumed.status == "open" and resumed.due_at == start + 5 * 60 * MINUTE + left


async def test_breaches_are_flagged_and_escalated(db, team):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    late = item.due_at + MINUTE
    view = await work.get_work_item(db, team.agent1, item.id, now=late)
    assert view.breached and not view.at_risk
    risky = await work.get_work_item(db, team.agent1, item.id, now=item.at_risk_at + MINUTE)
    assert risky.at_risk and not risky.breached
    assert await work.sweep_work_queue(db, frozenset({team.tenant.id}), now=late) == 1
    assert await work.sweep_work_queue(db, frozenset({team.tenant.id}), now=late) == 0
    board = await work.lead_board(db, team.lead, now=late)
    [row] = [t for t in board.tenants if t.tenant_id == team.tenant.id]
    assert (row.open, row.breached) == (1, 1)


# ---------------------------------------------------------------- get next


async def test_get_next_gives_the_most_urgent_first(db, team):
    made = {}
    for title, priority in (("normal", "normal"), ("urgent", "urgent"), ("high", "high")):
        made[title] = await work.create_work_item(
            db,
            team.lead,
            WorkItemCreate(
                tenant_id=team.tenant.id, kind=WorkItemKind.ORDER_ENTRY, title=title, priority=priority
            ),
        )
    got = []
    for _ in range(3):
        item = await work.claim_next_work_item(db, team.agent1)
        got.append(item.title)
        await work.complete_work_item(db, team.agent1, item.id, WorkOutcome.RESOLVED)
    # Urgent targets are the shortest, so urgent is due first, then high, then normal.
    assert got == ["urgent", "high", "normal"]


async def test_claim_order_matches_the_documented_priority_key(db, team):
    base = dt.datetime.now(dt.UTC)
    due = base + dt.timedelta(hours=2)
    specs = [  # (due offset in minutes, priority, value, tier)
        (0, "normal", 100, 2),
        (0, "urgent", 100, 2),
        (0, "high", 5000, 2),
        (0, "high", 100, 1),
        (0, "high", 100, 3),
        (-30, "normal", 0, 3),
        (45, "urgent", 10**6, 1),
        (0, "high", 100, 1),
    ]
    async with db.transaction(Scope(tenant_ids=frozenset({team.tenant.id}))) as session:
        for index, (offset, priority, value, tier) in enumerate(specs):
            session.add(
                WorkItem(
                    tenant_id=team.tenant.id,
                    id=new_id(),
                    kind=WorkItemKind.EXCEPTION,
                    status="open",
                    title=f"item {index}",
                    cause="manual:exception",
                    priority=priority,
                    value_minor=value,
                    client_tier=tier,
                    sla_target_seconds=3600,
                    sla_consumed_seconds=0,
                    sla_running_since=base,
                    due_at=due + dt.timedelta(minutes=offset),
                    at_risk_at=due,
                    created_by="test",
                    created_at=base + dt.timedelta(seconds=index),
                    updated_at=base,
                )
            )
    rows = await items_of(db, team.tenant)
    expected = [
        i.title
        for i in sorted(
            rows,
            key=lambda i: priority_key(
                i.due_at, i.priority, i.value_minor, i.client_tier, i.created_at, i.id
            ),
        )
    ]
    claimed = []
    for _ in rows:
        item = await work.claim_next_work_item(db, team.agent1)
        claimed.append(item.title)
        await work.complete_work_item(db, team.agent1, item.id, WorkOutcome.RESOLVED)
    assert claimed == expected
    assert claimed[:2] == ["item 5", "item 1"]


async def test_get_next_honours_tenants_and_skills(db, team):
    await capture(db, team.tenant)
    assert await work.claim_next_work_item(db, team.outsider) is None
    german = await work.create_work_item(
        db,
        team.lead,
        WorkItemCreate(
            tenant_id=team.tenant.id,
            kind=WorkItemKind.CUSTOMER_MESSAGE,
            title="Wo ist mein Paket?",
            language="de",
            priority="urgent",
        ),
    )
    # The agents speak English only: the German message is not theirs, however urgent.
    first = await work.claim_next_work_item(db, team.agent1)
    assert first.id != german.id and first.kind == "verification"
    assert await work.claim_next_work_item(db, team.agent2) is None
    with pytest.raises(NotFound):
        await work.get_work_item(db, team.outsider, first.id)


async def test_one_item_at_a_time_and_the_lease_is_renewed(db, team):
    await capture(db, team.tenant)
    await capture(db, team.tenant)
    now = dt.datetime.now(dt.UTC)
    first = await work.claim_next_work_item(db, team.agent1, now=now)
    again = await work.claim_next_work_item(db, team.agent1, now=now + 5 * MINUTE)
    assert again.id == first.id and again.lease_expires_at == now + 15 * MINUTE
    renewed = await work.renew_lease(db, team.agent1, first.id, now=now + 9 * MINUTE)
    assert renewed.lease_expires_at == now + 19 * MINUTE
    with pytest.raises(Conflict):
        await work.renew_lease(db, team.agent2, first.id, now=now)


async def test_an_expired_lease_puts_the_item_back(db, team):
    await capture(db, team.tenant)
    now = dt.datetime.now(dt.UTC)
    first = await work.claim_next_work_item(db, team.agent1, now=now)
    assert await work.claim_next_work_item(db, team.agent2, now=now + 9 * MINUTE) is None
    taken = await work.claim_next_work_item(db, team.agent2, now=now + 11 * MINUTE)
    assert taken.id == first.id and taken.claimed_by == team.agent2.id
    with pytest.raises(Conflict, match="Someone else"):
        await work.renew_lease(db, team.agent1, first.id, now=now + 11 * MINUTE)
    with pytest.raises(Conflict):
        await work.complete_work_item(db, team.agent1, first.id, WorkOutcome.RESOLVED)
    reasons = sorted((c.via, c.release_reason or "") for c in await claims_of(db, team.tenant))
    assert reasons == [("get_next", ""), ("get_next", "expired")]


async def test_the_sweep_returns_expired_leases_too(db, team):
    await capture(db, team.tenant)
    now = dt.datetime.now(dt.UTC)
    first = await work.claim_next_work_item(db, team.agent1, now=now)
    await work.sweep_work_queue(db, frozenset({team.tenant.id}), now=now + 11 * MINUTE)
    item = await work.get_work_item(db, team.lead, first.id)
    assert (item.status, item.claimed_by) == ("open", None)


async def test_snooze_hand_back_and_reassign(db, team):
    await capture(db, team.tenant)
    now = dt.datetime.now(dt.UTC)
    item = await work.claim_next_work_item(db, team.agent1, now=now)
    with pytest.raises(ValidationFailed):
        await work.snooze_work_item(db, team.agent1, item.id, now - MINUTE, now=now)
    snoozed = await work.snooze_work_item(db, team.agent1, item.id, now + 60 * MINUTE, now=now)
    assert snoozed.status == "snoozed" and snoozed.claimed_by is None
    assert await work.claim_next_work_item(db, team.agent2, now=now + 30 * MINUTE) is None
    woken = await work.claim_next_work_item(db, team.agent2, now=now + 61 * MINUTE)
    assert woken.id == item.id
    back = await work.hand_back_work_item(db, team.agent2, item.id, now=now + 62 * MINUTE)
    assert back.status == "open"
    with pytest.raises(PermissionDenied):
        await work.reassign_work_item(db, team.agent1, item.id, team.agent2.id)
    with pytest.raises(ValidationFailed):
        await work.reassign_work_item(db, team.lead, item.id, team.outsider.id)
    moved = await work.reassign_work_item(db, team.lead, item.id, team.agent1.id, now=now + 63 * MINUTE)
    assert moved.claimed_by == team.agent1.id and moved.lease_expires_at == now + 123 * MINUTE
    moved = await work.reassign_work_item(db, team.lead, item.id, team.agent2.id, now=now + 64 * MINUTE)
    assert [i.id for i in await work.list_my_work_items(db, team.agent2)] == [item.id]
    assert await work.list_my_work_items(db, team.agent1) == []
    done = await work.complete_work_item(db, team.agent2, item.id, WorkOutcome.ESCALATED, "client decides")
    assert done.status == "done"
    with pytest.raises(InvalidTransition):
        await work.complete_work_item(db, team.lead, item.id, WorkOutcome.RESOLVED)
    with pytest.raises(ValidationFailed):
        await work.complete_work_item(db, team.agent2, item.id, WorkOutcome.RESOLVED_ELSEWHERE)
    history = sorted((c.via, c.release_reason) for c in await claims_of(db, team.tenant))
    assert history == [
        ("get_next", "hand_back"),
        ("get_next", "snooze"),
        ("reassign", "done"),
        ("reassign", "reassigned"),
    ]


async def test_a_second_live_claim_is_refused_by_the_database(db, team):
    await capture(db, team.tenant)
    item = await work.claim_next_work_item(db, team.agent1)
    with pytest.raises(IntegrityError):
        async with db.transaction(Scope(tenant_ids=frozenset({team.tenant.id}))) as session:
            session.add(
                WorkClaim(
                    tenant_id=team.tenant.id,
                    id=new_id(),
                    work_item_id=item.id,
                    agent_id=team.agent2.id,
                    claimed_at=dt.datetime.now(dt.UTC),
                    via="get_next",
                )
            )


async def test_clients_cannot_use_the_queue(db, team):
    client_actor = Actor(
        kind=ActorKind.CLIENT, id=uuid.uuid4(), display_name="c", tenant_ids=frozenset({team.tenant.id})
    )
    with pytest.raises(PermissionDenied):
        await work.claim_next_work_item(db, client_actor)
    with pytest.raises(PermissionDenied):
        await work.lead_board(db, team.agent1)


async def test_many_agents_at_once_get_every_item_exactly_once(db, settings):
    """Agents on their own connections call Get next at the same moment, again and again."""
    tenant = await make_tenant(db, "Rush Hour")
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    total = 60
    for index in range(total):
        await work.create_work_item(
            db,
            system,
            WorkItemCreate(
                tenant_id=tenant.id,
                kind=WorkItemKind.ORDER_ENTRY,
                title=f"call {index}",
                priority=("normal", "high", "urgent")[index % 3],
            ),
        )
    agents = [
        staff(await make_staff(db, StaffRole.AGENT, tenant), StaffRole.AGENT, tenant) for _ in range(16)
    ]
    crowd = Database(make_engine(settings.app_url, pool_size=len(agents)))
    start = asyncio.Event()
    taken: list[tuple[uuid.UUID, uuid.UUID]] = []

    async def work_shift(agent: Actor) -> None:
        await start.wait()
        while True:
            item = await work.claim_next_work_item(crowd, agent)
            if item is None:
                return
            taken.append((item.id, agent.id))
            await work.complete_work_item(crowd, agent, item.id, WorkOutcome.RESOLVED)

    try:
        # Open every connection first so that the claims really overlap.
        async def warm() -> None:
            async with crowd.transaction(Scope()) as session:
                await session.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(*(warm() for _ in agents))
        shifts = [asyncio.create_task(work_shift(a)) for a in agents]
        start.set()
        await asyncio.gather(*shifts)
    finally:
        await crowd.dispose()
    counts = Counter(item_id for item_id, _ in taken)
    assert len(counts) == total and set(counts.values()) == {1}
    assert len({agent for _, agent in taken}) > 1
    claims = await claims_of(db, tenant)
    assert len(claims) == total and all(c.release_reason == "done" for c in claims)


async def test_the_worker_sweep_job_is_registered_and_runs(db):
    from orderdesk.worker import job_registry
    from orderdesk.workqueue import jobs as work_jobs

    registry = job_registry()
    assert any(p.function is work_jobs.sweep_work_queue for p in registry.periodic)
    assert isinstance(await work_jobs.sweep_work_queue({"db": db}), int)


async def test_operations_view_counts_stuck_and_late_orders(db, team, owner_connection):
    from orderdesk.workqueue import operations

    now = dt.datetime.now(dt.UTC)
    stuck = await capture(db, team.tenant)
    await capture(db, team.tenant, deliver_by=(now - dt.timedelta(hours=2)).isoformat())
    await capture(db, team.tenant, deliver_by=(now + dt.timedelta(hours=5)).isoformat())
    await capture(db, team.other)  # another tenant: never in this lead's view
    await owner_connection.execute(
        "UPDATE orders SET status_changed_at = now() - interval '9 hours' WHERE tenant_id = $1 AND id = $2",
        team.tenant.id,
        uuid.UUID(stuck["id"]),
    )
    view = await operations.operations_view(db, team.lead)
    [row] = view.tenants
    assert row.by_status == {"awaiting_verification": 3}
    assert row.stuck_by_status == {"awaiting_verification": 1}
    # Not shipped yet: expected no sooner than the transit days from now, after the 5 hours promised.
    assert (row.on_track, row.expected_late, row.late) == (0, 1, 1)
    assert [o.number for o in view.stuck] == [stuck["number"]] and view.stuck[0].threshold_hours == 8
    # A tighter threshold from the policy counts more orders as stuck.
    await work.set_sla_policy(
        db, team.lead, team.tenant.id, {**ROUND_THE_CLOCK, "stuck_after_hours": {"awaiting_verification": 1}}
    )
    later = await operations.operations_view(db, team.lead, now=now + dt.timedelta(hours=2))
    assert later.tenants[0].stuck_by_status == {"awaiting_verification": 3}
    with pytest.raises(PermissionDenied):
        await operations.operations_view(db, team.agent1)


async def test_a_double_click_claims_one_item(db, team, settings):
    for _ in range(3):
        await capture(db, team.tenant)
    clicks = Database(make_engine(settings.app_url, pool_size=4))
    try:
        got = await asyncio.gather(*(work.claim_next_work_item(clicks, team.agent1) for _ in range(4)))
    finally:
        await clicks.dispose()
    assert len({item.id for item in got}) == 1
    assert len(await work.list_my_work_items(db, team.agent1)) == 1


async def test_shipment_exceptions_recorded_on_the_timeline_open_and_settle_items(db, team):
    """The fulfillment feature flags and clears shipments through timeline events; the queue follows."""
    from orderdesk.orders.timeline import append_event

    order = await capture(db, team.tenant, payment_status="paid")
    order_id = uuid.UUID(order["id"])
    shipment = str(uuid.uuid4())
    for kind, attention in (
        ("shipment_exception", [None, "stuck"]),
        ("shipment_attention_cleared", ["stuck", None]),
    ):
        async with db.transaction(team.system.scope) as session:
            locked = await orders.lock_order(session, team.system, order_id)
            append_event(
                session, locked, team.system, kind, kind, {"shipment": shipment, "attention": attention}
            )
        [item] = [i for i in await items_of(db, team.tenant, order_id) if i.cause == f"shipment:{shipment}"]
        if kind == "shipment_exception":
            assert item.kind is WorkItemKind.TRACKING_FOLLOW_UP and item.status.value == "open"
        else:
            assert item.status.value == "done" and item.outcome is WorkOutcome.RESOLVED_ELSEWHERE
