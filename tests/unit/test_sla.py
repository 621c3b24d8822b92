"""SLA clock arithmetic: business hours, several windows a day, time zones, DST, holidays, pauses."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from orderdesk.workqueue.policies import (
    BusinessCalendar,
    PolicyInvalid,
    SlaClock,
    default_policy,
    parse_policy,
    priority_key,
    sla_state,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def berlin(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def calendar(doc: dict) -> BusinessCalendar:
    return parse_policy(doc).calendar


# Mon-Fri 09:00-12:00 and 13:00-17:00 (7 business hours a day), Christmas and New Year off.
OFFICE = calendar(
    {
        "time_zone": "Europe/Berlin",
        "business_hours": {d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-12-25", "2027-01-01"],
    }
)
# Every hour of every day, except one holiday (so the generic path runs, not the shortcut).
ROUND_THE_CLOCK = calendar(
    {
        "time_zone": "Europe/Berlin",
        "business_hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "holidays": ["2030-01-01"],
    }
)
# Sunday has one window that contains the spring-forward gap (02:00-03:00 does not exist).
SUNDAY_NIGHT = calendar(
    {"time_zone": "Europe/Berlin", "business_hours": {"sun": ["01:00-04:00"], "mon": ["09:00-10:00"]}}
)
US_OFFICE = calendar(
    {
        "time_zone": "America/New_York",
        "business_hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    }
)
KOLKATA = calendar({"time_zone": "Asia/Kolkata", "business_hours": {"mon": ["09:30-18:00"]}})


ADD_CASES = [
    # (case, calendar, start, business minutes, expected local wall time)
    ("inside a window", OFFICE, berlin("2026-03-23 10:00"), 60, berlin("2026-03-23 11:00")),
    ("across lunch", OFFICE, berlin("2026-03-23 11:30"), 60, berlin("2026-03-23 13:30")),
    ("exactly to a window's end", OFFICE, berlin("2026-03-23 16:00"), 60, berlin("2026-03-23 17:00")),
    ("across the night", OFFICE, berlin("2026-03-23 16:30"), 60, berlin("2026-03-24 09:30")),
    ("started before opening", OFFICE, berlin("2026-03-23 06:00"), 30, berlin("2026-03-23 09:30")),
    ("started at lunch", OFFICE, berlin("2026-03-23 12:15"), 30, berlin("2026-03-23 13:30")),
    ("several days", OFFICE, berlin("2026-03-23 09:00"), 3 * 7 * 60, berlin("2026-03-25 17:00")),
    # The weekend of 28/29 March 2026 also moves Berlin from UTC+1 to UTC+2.
    ("across a weekend and DST", OFFICE, berlin("2026-03-27 16:00"), 120, berlin("2026-03-30 10:00")),
    ("started on a Saturday", OFFICE, berlin("2026-03-28 11:00"), 45, berlin("2026-03-30 09:45")),
    ("across Christmas", OFFICE, berlin("2026-12-24 16:00"), 120, berlin("2026-12-28 10:00")),
    ("started on a holiday", OFFICE, berlin("2027-01-01 10:00"), 60, berlin("2027-01-04 10:00")),
    ("autumn DST weekend", OFFICE, berlin("2026-10-23 16:30"), 60, berlin("2026-10-26 09:30")),
    # 24 business hours over the 23-hour spring-forward Sunday end an hour later on the wall clock.
    ("24h over a 23h day", ROUND_THE_CLOCK, berlin("2026-03-28 12:00"), 24 * 60, berlin("2026-03-29 13:00")),
    # ...and over the 25-hour autumn Sunday an hour earlier.
    ("24h over a 25h day", ROUND_THE_CLOCK, berlin("2026-10-24 12:00"), 24 * 60, berlin("2026-10-25 11:00")),
    # 01:00-04:00 on spring-forward day lasts two real hours: 150 minutes spill into Monday.
    ("window with the DST gap", SUNDAY_NIGHT, berlin("2026-03-29 01:00"), 150, berlin("2026-03-30 09:30")),
    (
        "New York spring forward",
        US_OFFICE,
        dt.datetime(2026, 3, 6, 16, 0, tzinfo=NEW_YORK),
        120,
        dt.datetime(2026, 3, 9, 10, 0, tzinfo=NEW_YORK),
    ),
    (
        "half-hour offset zone",
        KOLKATA,
        dt.datetime(2026, 3, 23, 17, 0, tzinfo=ZoneInfo("Asia/Kolkata")),
        90,
        dt.datetime(2026, 3, 30, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata")),
    ),
    ("zero minutes outside hours", OFFICE, berlin("2026-03-28 11:00"), 0, berlin("2026-03-28 11:00")),
    ("backwards across the night", OFFICE, berlin("2026-03-24 09:30"), -60, berlin("2026-03-23 16:30")),
    ("backwards across a weekend", OFFICE, berlin("2026-03-30 09:15"), -30, berlin("2026-03-27 16:45")),
]


@pytest.mark.parametrize(
    ("case", "cal", "start", "minutes", "expected"), ADD_CASES, ids=[c[0] for c in ADD_CASES]
)
def test_adding_business_time(case, cal, start, minutes, expected):
    result = cal.add(start, minutes * 60)
    assert result == expected, f"{case}: {result.astimezone(expected.tzinfo)}"
    assert result.tzinfo is not None


def test_results_are_utc_instants():
    due = OFFICE.add(berlin("2026-03-27 16:00"), 120 * 60)
    assert due.utcoffset() == dt.timedelta(0)
    assert due == dt.datetime(2026, 3, 30, 8, 0, tzinfo=dt.UTC)  # 10:00 CEST


ELAPSED_CASES = [
    ("same window", OFFICE, berlin("2026-03-23 09:10"), berlin("2026-03-23 09:40"), 30),
    ("over lunch", OFFICE, berlin("2026-03-23 11:00"), berlin("2026-03-23 14:00"), 120),
    ("over a weekend", OFFICE, berlin("2026-03-27 16:00"), berlin("2026-03-30 10:00"), 120),
    ("whole holiday weekend", OFFICE, berlin("2026-12-24 17:00"), berlin("2026-12-28 09:00"), 0),
    ("the 23-hour day", ROUND_THE_CLOCK, berlin("2026-03-29 00:00"), berlin("2026-03-30 00:00"), 23 * 60),
    ("the 25-hour day", ROUND_THE_CLOCK, berlin("2026-10-25 00:00"), berlin("2026-10-26 00:00"), 25 * 60),
    ("reversed", OFFICE, berlin("2026-03-23 09:40"), berlin("2026-03-23 09:10"), -30),
]


@pytest.mark.parametrize(
    ("case", "cal", "start", "end", "minutes"), ELAPSED_CASES, ids=[c[0] for c in ELAPSED_CASES]
)
def test_elapsed_business_time(case, cal, start, end, minutes):
    assert cal.elapsed(start, end) == minutes * 60, case


@pytest.mark.parametrize(
    "cal", [OFFICE, ROUND_THE_CLOCK, SUNDAY_NIGHT, US_OFFICE], ids=["office", "24/7", "gap", "us"]
)
def test_add_and_elapsed_agree(cal):
    rng = random.Random(5)
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for _ in range(300):
        start = base + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 300))
        seconds = rng.randrange(1, 60 * 60 * 40)
        due = cal.add(start, seconds)
        assert cal.elapsed(start, due) == pytest.approx(seconds)
        assert cal.add(due, -seconds) <= due
        assert cal.elapsed(cal.add(due, -seconds), due) == pytest.approx(seconds)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        OFFICE.add(dt.datetime(2026, 3, 23, 10), 60)


# ---------------------------------------------------------------- clocks


def test_due_and_at_risk_times():
    clock = SlaClock(target_seconds=4 * 3600, running_since=berlin("2026-03-23 09:00"))
    assert clock.due_at(OFFICE) == berlin("2026-03-23 14:00")  # 3 h before lunch, 1 h after
    # Less than 20 % (48 min) left after 3 h 12 min of business time.
    assert clock.at_risk_at(OFFICE, 0.2) == berlin("2026-03-23 13:12")
    fine = sla_state(OFFICE, clock, berlin("2026-03-23 13:11"))
    risky = sla_state(OFFICE, clock, berlin("2026-03-23 13:13"))
    breached = sla_state(OFFICE, clock, berlin("2026-03-23 14:00"))
    assert (fine.at_risk, fine.breached) == (False, False)
    assert (risky.at_risk, risky.breached) == (True, False)
    assert (breached.at_risk, breached.breached) == (False, True)
    # Over lunch nothing is used up.
    assert sla_state(OFFICE, clock, berlin("2026-03-23 12:59")).remaining_seconds == 3600


def test_the_clock_pauses_while_waiting():
    clock = SlaClock(target_seconds=4 * 3600, running_since=berlin("2026-03-23 09:00"))
    paused = clock.pause(OFFICE, berlin("2026-03-23 11:00"))
    assert paused.paused and paused.consumed_seconds == 2 * 3600
    assert paused.due_at(OFFICE) is None
    # Two days later, nothing more has been used.
    later = sla_state(OFFICE, paused, berlin("2026-03-25 16:00"))
    assert later.remaining_seconds == 2 * 3600 and not later.breached
    resumed = paused.resume(berlin("2026-03-25 15:00"))
    assert resumed.due_at(OFFICE) == berlin("2026-03-25 17:00")  # 2 h left: 15:00-17:00
    assert resumed.pause(OFFICE, berlin("2026-03-25 16:00")).consumed_seconds == 3 * 3600


def test_a_clock_paused_over_its_target_stays_breached():
    clock = SlaClock(target_seconds=3600, running_since=berlin("2026-03-23 09:00"))
    paused = clock.pause(OFFICE, berlin("2026-03-23 11:00"))
    state = sla_state(OFFICE, paused, berlin("2026-03-24 09:00"))
    assert state.breached and state.due_at is None
    # Resumed, its due time lies in the past: it still sorts first.
    resumed = paused.resume(berlin("2026-03-24 10:00"))
    assert resumed.due_at(OFFICE) == berlin("2026-03-24 09:00")  # an hour of business time ago


def test_pause_and_resume_are_idempotent():
    running = SlaClock(3600, 0, berlin("2026-03-23 09:00"))
    assert running.resume(berlin("2026-03-23 10:00")) is running
    paused = running.pause(OFFICE, berlin("2026-03-23 09:30"))
    assert paused.pause(OFFICE, berlin("2026-03-23 10:30")) is paused


# ---------------------------------------------------------------- policies


def test_default_policy_targets_and_hours():
    policy = default_policy("Europe/Berlin")
    assert policy.target_seconds("verification", "normal") == 240 * 60
    assert policy.target_seconds("verification", "urgent") == 60 * 60
    # Friday 17:00 + 4 business hours: Monday noon.
    clock = policy.start_clock("verification", "normal", berlin("2026-03-27 17:00"))
    assert clock.due_at(policy.calendar) == berlin("2026-03-30 11:00")


def test_policy_round_trips_through_its_document():
    policy = parse_policy(
        {
            "time_zone": "America/New_York",
            "business_hours": {"mon": ["13:00-17:00", "08:00-12:00"], "sat": ["10:00-14:00"]},
            "holidays": ["2026-07-03"],
            "targets": {"exception": {"urgent": 30}},
            "at_risk_percent": 25,
            "client_tier": 1,
        }
    )
    document = policy.document()
    assert document["business_hours"]["mon"] == ["08:00-12:00", "13:00-17:00"]
    assert document["targets"]["exception"] == {"normal": 480, "high": 240, "urgent": 30}
    assert parse_policy(document) == policy


def test_bad_policies_list_every_problem():
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(
            {
                "time_zone": "Mars/Olympus",
                "business_hours": {"mon": ["09:00-12:00", "11:00-13:00"], "tue": ["17:00-09:00"], "xyz": []},
                "holidays": ["25.12.2026"],
                "targets": {"lunch": {"normal": 5}, "verification": {"normal": 0, "asap": 5}},
                "at_risk_percent": 0,
                "client_tier": 7,
            }
        )
    fields = sorted(e.field for e in caught.value.errors)
    assert fields == [
        "at_risk_percent",
        "business_hours.mon",
        "business_hours.tue",
        "business_hours.xyz",
        "client_tier",
        "holidays",
        "targets.lunch",
        "targets.verification.asap",
        "targets.verification.normal",
        "time_zone",
    ]


def test_a_week_without_hours_is_refused():
    with pytest.raises(PolicyInvalid, match="at least one window"):
        parse_policy({"business_hours": {"mon": []}})


# ---------------------------------------------------------------- priority


def test_priority_key_orders_by_breach_then_priority_value_tier_age():
    t0 = dt.datetime(2026, 3, 23, 9, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    items = {
        "paused": priority_key(None, "urgent", 10**9, 1, t0),
        "breached": priority_key(t0 - hour, "normal", 0, 3, t0),
        "due-soon": priority_key(t0, "normal", 0, 3, t0),
        "due-soon-urgent": priority_key(t0, "urgent", 0, 3, t0),
        "due-soon-high-rich": priority_key(t0, "high", 5000, 3, t0),
        "due-soon-high-poor": priority_key(t0, "high", 100, 3, t0),
        "due-soon-high-poor-tier1": priority_key(t0, "high", 100, 1, t0),
        "due-soon-high-poor-tier1-older": priority_key(t0, "high", 100, 1, t0 - hour),
        "later": priority_key(t0 + hour, "urgent", 10**9, 1, t0),
    }
    assert sorted(items, key=items.get) == [
        "breached",
        "due-soon-urgent",
        "due-soon-high-rich",
        "due-soon-high-poor-tier1-older",
        "due-soon-high-poor-tier1",
        "due-soon-high-poor",
        "due-soon",
        "later",
        "paused",
    ]


def test_stuck_thresholds_are_part_of_the_policy():
    policy = parse_policy({"stuck_after_hours": {"picking": 4}})
    assert policy.stuck_after_hours["picking"] == 4
    assert policy.stuck_after_hours["awaiting_verification"] == 8
    assert parse_policy(policy.document()) == policy
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy({"stuck_after_hours": {"closed": 4, "picking": 0}})
    assert sorted(e.field for e in caught.value.errors) == [
        "stuck_after_hours.closed",
        "stuck_after_hours.picking",
    ]
