"""The queue's floors: Get next starts past what was claimed, and never past an item it may take."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import uuid

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from orderdesk.accounts import services as accounts
from orderdesk.accounts.models import StaffRole
from orderdesk.core.tenancy import Scope
from orderdesk.workqueue import floors
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem, WorkQueueFloor
from orderdesk.workqueue.policies import priority_key
from orderdesk.workqueue.schemas import WorkItemCreate
from orderdesk.workqueue.states import WorkItemKind, WorkOutcome
from tests.conftest import PASSWORD, unique
from tests.integration import test_workqueue
from tests.integration.test_workqueue import items_of, staff

team = test_workqueue.team  # one tenant on a 24/7 policy, two English-speaking agents, a lead

MINUTE = dt.timedelta(minutes=1)


async def floor_of(db, tenant) -> dt.datetime | None:
    async with db.transaction(Scope(tenant_ids=frozenset({tenant.id}))) as session:
        return await session.scalar(
            select(WorkQueueFloor.due_floor).where(WorkQueueFloor.tenant_id == tenant.id)
        )


async def german_speaker(db, team, task_kinds: list[str] | None = None):
    """A new agent of the team's tenant who speaks German only (email, the given kinds or all)."""
    return await accounts.create_staff_user(
        db,
        team.system,
        email=f"{unique('de')}@ops.example.com",
        display_name="Agent Deutsch",
        password=PASSWORD,
        role=StaffRole.AGENT,
        tenant_slugs=[team.tenant.slug],
        languages=["de"],
        channels=["email"],
        task_kinds=task_kinds,
    )


async def make_item(db, team, title: str, now: dt.datetime, **fields):
    data = WorkItemCreate(
        tenant_id=team.tenant.id, kind=fields.pop("kind", WorkItemKind.ORDER_ENTRY), title=title, **fields
    )
    return await work.create_work_item(db, team.lead, data, now=now)


async def test_the_floor_follows_the_queue_and_comes_down_for_a_handed_back_item(db, team):
    base = dt.datetime.now(dt.UTC)
    first, second, third = [await make_item(db, team, f"item {n}", base + n * MINUTE) for n in (1, 2, 3)]
    assert first.due_at < second.due_at < third.due_at
    assert await floors.raise_floors(db, [team.tenant.id]) == [team.tenant.id]
    assert await floor_of(db, team.tenant) == first.due_at

    taken = await work.claim_next_work_item(db, team.agent1)
    assert taken.id == first.id
    await work.complete_work_item(db, team.agent1, first.id, WorkOutcome.RESOLVED)
    held = await work.claim_next_work_item(db, team.agent1)
    assert held.id == second.id
    await floors.raise_floors(db, [team.tenant.id])
    assert await floor_of(db, team.tenant) == third.due_at  # past the done item and the held one

    # Handed back, the second item is more urgent than the floor: the trigger lowers it.
    await work.hand_back_work_item(db, team.agent1, second.id)
    assert await floor_of(db, team.tenant) == second.due_at
    again = await work.claim_next_work_item(db, team.agent2)
    assert again.id == second.id


async def test_a_new_item_more_urgent_than_the_floor_is_next(db, team):
    base = dt.datetime.now(dt.UTC)
    later = await make_item(db, team, "in four hours", base)
    await floors.raise_floors(db, [team.tenant.id])
    assert await floor_of(db, team.tenant) == later.due_at
    urgent = await make_item(db, team, "urgent", base, priority="urgent", kind=WorkItemKind.CUSTOMER_MESSAGE)
    assert urgent.due_at < later.due_at
    assert (await work.claim_next_work_item(db, team.agent1)).id == urgent.id


async def test_expired_leases_and_woken_snoozes_come_back_below_the_floor(db, team):
    now = dt.datetime.now(dt.UTC)
    first = await make_item(db, team, "first", now)
    second = await make_item(db, team, "second", now + MINUTE)
    held = await work.claim_next_work_item(db, team.agent1, now=now)
    assert held.id == first.id
    await floors.raise_floors(db, [team.tenant.id])
    assert await floor_of(db, team.tenant) == second.due_at
    # Get next puts the expired lease back, then claims: the item is below the old floor.
    back = await work.claim_next_work_item(db, team.agent2, now=now + 11 * MINUTE)
    assert back.id == first.id

    await work.snooze_work_item(db, team.agent2, first.id, now + 30 * MINUTE, now=now + 12 * MINUTE)
    await floors.raise_floors(db, [team.tenant.id])
    assert await floor_of(db, team.tenant) == second.due_at
    woken = await work.claim_next_work_item(db, team.agent1, now=now + 31 * MINUTE)
    assert woken.id == first.id


async def test_an_item_nobody_may_take_does_not_hold_the_floor_until_someone_may(db, team):
    now = dt.datetime.now(dt.UTC)
    german = await make_item(db, team, "Wo ist mein Paket?", now, language="de", priority="urgent")
    english = await make_item(db, team, "Where is my parcel?", now, language="en")
    assert german.due_at < english.due_at
    await floors.raise_floors(db, [team.tenant.id])
    # Only English speakers work here: the floor passes the German message.
    assert await floor_of(db, team.tenant) == english.due_at
    # A German speaker joins: the assignment resets the floor, and they get the message.
    user = await german_speaker(db, team)
    assert await floor_of(db, team.tenant) == dt.datetime.min  # minus infinity, as the driver reads it
    speaker = staff(user, StaffRole.AGENT, team.tenant)
    assert (await work.claim_next_work_item(db, speaker)).id == german.id


async def test_a_raise_skips_a_tenant_while_an_item_of_it_is_being_opened(db, team):
    now = dt.datetime.now(dt.UTC)
    first = await make_item(db, team, "first", now)
    second = await make_item(db, team, "second", now + MINUTE)
    await work.claim_next_work_item(db, team.agent1, now=now)  # holds the first
    await floors.raise_floors(db, [team.tenant.id])
    assert await floor_of(db, team.tenant) == second.due_at
    async with db.transaction(Scope(tenant_ids=frozenset({team.tenant.id}))) as session:
        # An item being opened (here by a plain update): its transaction holds the floor lock, shared.
        await session.execute(
            text(
                "UPDATE work_items SET status = 'open', claimed_by = NULL, claimed_at = NULL,"
                " lease_expires_at = NULL WHERE tenant_id = :t AND id = :id"
            ),
            {"t": team.tenant.id, "id": first.id},
        )
        await session.execute(text("DELETE FROM work_claims WHERE tenant_id = :t"), {"t": team.tenant.id})
        # The raise cannot see that item yet, and leaves the floor alone rather than pass it.
        assert await floors.raise_floors(db, [team.tenant.id]) == []
    assert await floor_of(db, team.tenant) == first.due_at
    assert await floors.raise_floors(db, [team.tenant.id]) == [team.tenant.id]
    assert await floor_of(db, team.tenant) == first.due_at
    assert (await work.claim_next_work_item(db, team.agent2, now=now)).id == first.id


async def test_an_open_item_always_has_a_due_time(db, team):
    item = await make_item(db, team, "x", dt.datetime.now(dt.UTC))
    with pytest.raises(IntegrityError, match="ck_work_items_open_has_due"):
        async with db.transaction(Scope(tenant_ids=frozenset({team.tenant.id}))) as session:
            await session.execute(
                text("UPDATE work_items SET due_at = NULL WHERE tenant_id = :t AND id = :id"),
                {"t": team.tenant.id, "id": item.id},
            )


async def test_get_next_matches_the_most_urgent_item_through_random_work(db, team):
    """Whatever happens to items, an agent's Get next is the most urgent item they may take
    (computed here from the items themselves), with floors raised at random moments."""
    rng = random.Random(20261126)
    german_user = await german_speaker(db, team, task_kinds=["customer_message", "exception"])
    agents = {
        team.agent1.id: (team.agent1, {"en"}, None),
        german_user.id: (
            staff(german_user, StaffRole.AGENT, team.tenant),
            {"de"},
            {"customer_message", "exception"},
        ),
    }
    base = dt.datetime.now(dt.UTC)
    kinds = [WorkItemKind.ORDER_ENTRY, WorkItemKind.CUSTOMER_MESSAGE, WorkItemKind.EXCEPTION]

    async def new_item(n: int) -> None:
        await make_item(
            db,
            team,
            f"item {n}",
            base + rng.randint(-120, 120) * MINUTE,
            kind=rng.choice(kinds),
            priority=rng.choice(["normal", "high", "urgent"]),
            language=rng.choice([None, "en", "de"]),
            channel=rng.choice([None, "email", "chat"]),  # nobody takes chat
        )

    def may_take(item: WorkItem, languages: set[str], task_kinds: set[str] | None) -> bool:
        return (
            (task_kinds is None or item.kind.value in task_kinds)
            and (item.language is None or item.language in languages)
            and (item.channel is None or item.channel == "email")
        )

    for n in range(30):
        await new_item(n)
    held: dict = {}
    checked = 0
    for step in range(120):
        move = rng.random()
        if move < 0.15:
            await new_item(100 + step)
        elif move < 0.3:
            await floors.raise_floors(db, [team.tenant.id])
        elif move < 0.45 and held:
            agent_id, item_id = rng.choice(sorted(held.items(), key=str))
            del held[agent_id]
            await work.hand_back_work_item(db, agents[agent_id][0], item_id)
        else:
            agent_id = rng.choice(sorted(agents, key=str))
            actor, languages, task_kinds = agents[agent_id]
            if agent_id in held:
                await work.complete_work_item(db, actor, held.pop(agent_id), WorkOutcome.RESOLVED)
            items = await items_of(db, team.tenant)
            eligible = [i for i in items if i.status.value == "open" and may_take(i, languages, task_kinds)]
            expected = min(
                eligible,
                key=lambda i: priority_key(
                    i.due_at, i.priority.value, i.value_minor, i.client_tier, i.created_at, i.id
                ),
                default=None,
            )
            got = await work.claim_next_work_item(db, actor)
            assert (got and got.id) == (expected and expected.id), f"step {step}"
            if got is not None:
                held[agent_id] = got.id
            checked += 1
    assert checked > 40


async def test_with_a_report_open_get_next_starts_past_the_claimed_items(db, team, owner_url):
    """The reason for floors: a snapshot held open keeps the claimed items' old entries in the
    queue index; an agent's scan starts past them, an administrator's (no floor) walks them.
    Likewise the look-up of the item the agent holds starts at their last claim."""
    base = dt.datetime.now(dt.UTC)
    minutes = list(range(240))
    random.Random(7).shuffle(minutes)  # created in random order, so the queue order jumps between pages
    for m in minutes:
        await make_item(db, team, f"item {m}", base + m * MINUTE)
    report = await asyncpg.connect(_plain(owner_url))
    try:
        await report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert (
            await report.fetchval("SELECT count(*) FROM work_items WHERE tenant_id = $1", team.tenant.id)
            == 240
        )
        for n in range(200):
            # An agent's working day, compressed: a claim every ten seconds.
            item = await work.claim_next_work_item(
                db, team.agent1, now=base + n * 10 * dt.timedelta(seconds=1)
            )
            await work.complete_work_item(db, team.agent1, item.id, WorkOutcome.RESOLVED)
        await floors.raise_floors(db, [team.tenant.id])
        agent = await _scan_blocks(db, team.tenant, work._CLAIM_WITH_SKILLS_DRIVER, _claim_params(team))
        admin = await _scan_blocks(db, team.tenant, work._CLAIM_ANY_DRIVER, _claim_params(team))
        # The next raise, too, starts at the present floor.
        raised = await _scan_blocks(
            db, team.tenant, (floors._RAISE, ("tenant_ids",)), {"tenant_ids": [team.tenant.id]}
        )
    finally:
        await report.close()
    assert agent["ix_work_items_queue"] < 30, agent
    assert raised["ix_work_items_queue"] < 30, raised
    assert admin["ix_work_items_queue"] > 100, admin
    # The 200 items agent1 held and finished are behind their last claim.
    assert agent["ix_work_items_claimed_by"] < 10, agent


def _claim_params(team) -> dict:
    now = dt.datetime.now(dt.UTC)
    return {
        "tenant_ids": [team.tenant.id],
        "agent_id": team.agent1.id,
        "now": now,
        "lease": now + 10 * MINUTE,
        "claim_id": uuid.uuid4(),
    }


async def _scan_blocks(db, tenant, statement: tuple[str, tuple[str, ...]], params: dict) -> dict[str, int]:
    """Buffers a statement's index scans touched, per index (EXPLAIN ANALYZE, rolled back)."""
    sql, names = statement

    class Measured(Exception):
        """Rolls the transaction back: EXPLAIN ANALYZE did run the statement."""

    with contextlib.suppress(Measured):
        async with db.driver_transaction(
            Scope(tenant_ids=frozenset({tenant.id})), extra_settings=work.GET_NEXT_SETTINGS
        ) as driver:
            plan = await driver.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *(params[n] for n in names)
            )
            raise Measured
    plan = json.loads(plan) if isinstance(plan, str) else plan
    blocks: dict[str, int] = {}
    for node in _nodes(plan[0]["Plan"]):
        if "Index Name" in node:
            used = node["Shared Hit Blocks"] + node["Shared Read Blocks"]
            blocks[node["Index Name"]] = blocks.get(node["Index Name"], 0) + used
    return blocks


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def _plain(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
