"""SLA notices: the holder is told before the breach, the client's leads at the breach, once each."""

from __future__ import annotations

import asyncio

import pytest

from orderdesk.accounts.models import StaffRole
from orderdesk.core.errors import NotFound
from orderdesk.workqueue import services as work
from tests.conftest import make_staff
from tests.integration import test_workqueue
from tests.integration.test_workqueue import MINUTE, ROUND_THE_CLOCK, capture, items_of, staff

team = test_workqueue.team  # the work queue tests' fixture: one tenant, two agents, a lead


def kinds(notices) -> list[str]:
    return sorted(n.kind for n in notices)


async def sweep(db, team, now) -> None:
    await work.sweep_work_queue(db, frozenset({team.tenant.id, team.other.id}), now=now)


async def test_the_holder_is_told_before_the_breach_and_the_leads_at_it(db, team):
    other_lead = staff(await make_staff(db, StaffRole.LEAD, team.other), StaffRole.LEAD, team.other)
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    await work.claim_next_work_item(db, team.agent1, now=item.at_risk_at - 2 * MINUTE)

    await sweep(db, team, item.at_risk_at - MINUTE)
    assert await work.list_my_notifications(db, team.agent1) == []

    await sweep(db, team, item.at_risk_at + MINUTE)
    [notice] = await work.list_my_notifications(db, team.agent1)
    assert (notice.kind, notice.work_item_id, notice.due_at) == ("at_risk", item.id, item.due_at)
    assert notice.tenant_name == "Queue Co"
    assert await work.list_my_notifications(db, team.lead) == []

    # Still open in the agent's browser: the lease is renewed up to the breach.
    await work.renew_lease(db, team.agent1, item.id, now=item.due_at - 2 * MINUTE)
    await sweep(db, team, item.due_at + MINUTE)
    assert kinds(await work.list_my_notifications(db, team.agent1)) == ["at_risk", "breached"]
    [lead_notice] = await work.list_my_notifications(db, team.lead)
    assert (lead_notice.kind, lead_notice.work_item_id) == ("breached", item.id)
    assert await work.list_my_notifications(db, team.agent2) == []
    assert await work.list_my_notifications(db, other_lead) == []

    # The sweep runs every 15 seconds (and the lease runs out meanwhile): nobody is told twice.
    for minutes in (2, 3, 60):
        await sweep(db, team, item.due_at + minutes * MINUTE)
    assert kinds(await work.list_my_notifications(db, team.agent1)) == ["at_risk", "breached"]
    assert kinds(await work.list_my_notifications(db, team.lead)) == ["breached"]


async def test_an_unclaimed_breach_goes_to_the_leads_only(db, team):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    await sweep(db, team, item.at_risk_at + MINUTE)
    assert await work.list_my_notifications(db, team.lead) == []
    await sweep(db, team, item.due_at + MINUTE)
    assert kinds(await work.list_my_notifications(db, team.lead)) == ["breached"]
    for agent in (team.agent1, team.agent2, team.outsider):
        assert await work.list_my_notifications(db, agent) == []


async def test_a_paused_clock_tells_nobody(db, team):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    await work.claim_next_work_item(db, team.agent1, now=item.at_risk_at - 2 * MINUTE)
    await work.wait_on(db, team.agent1, item.id, "customer", now=item.at_risk_at - MINUTE)
    await sweep(db, team, item.due_at + 10 * MINUTE)
    assert await work.list_my_notifications(db, team.agent1) == []
    assert await work.list_my_notifications(db, team.lead) == []


async def test_a_new_due_time_is_a_new_notice(db, team):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    await sweep(db, team, item.due_at + MINUTE)
    # A tighter target moves the due time: the breach of the new one is news to the lead.
    await work.set_sla_policy(
        db, team.lead, team.tenant.id, {**ROUND_THE_CLOCK, "targets": {"verification": {"normal": 30}}}
    )
    [moved] = await items_of(db, team.tenant)
    assert moved.due_at != item.due_at
    await sweep(db, team, max(moved.due_at, item.due_at) + MINUTE)
    notices = await work.list_my_notifications(db, team.lead)
    assert sorted(n.due_at for n in notices) == sorted([item.due_at, moved.due_at])


async def test_concurrent_sweeps_tell_each_person_once(db, team):
    for _ in range(3):
        await capture(db, team.tenant)
    items = await items_of(db, team.tenant)
    late = max(i.due_at for i in items) + MINUTE
    await asyncio.gather(*(sweep(db, team, late) for _ in range(4)))
    notices = await work.list_my_notifications(db, team.lead)
    assert sorted(n.work_item_id for n in notices) == sorted(i.id for i in items)


async def test_reading_a_notice(db, team):
    await capture(db, team.tenant)
    [item] = await items_of(db, team.tenant)
    await sweep(db, team, item.due_at + MINUTE)
    [notice] = await work.list_my_notifications(db, team.lead)
    with pytest.raises(NotFound):
        await work.mark_notification_read(db, team.agent1, notice.id)
    with pytest.raises(NotFound):
        await work.mark_notification_read(db, team.outsider, notice.id)
    read = await work.mark_notification_read(db, team.lead, notice.id)
    assert read.read_at is not None
    assert await work.list_my_notifications(db, team.lead) == []
    [kept] = await work.list_my_notifications(db, team.lead, unread_only=False)
    assert kept.id == notice.id
    again = await work.mark_notification_read(db, team.lead, notice.id)
    assert again.read_at == read.read_at
