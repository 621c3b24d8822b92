"""Routing rules on a table of cases: whole order, nearest, split, backorder, re-allocation."""

from __future__ import annotations

import datetime as dt

import pytest

from orderdesk.inventory.routing import (
    Destination,
    Need,
    QueuedBackorder,
    Site,
    dispatch_day,
    fill_backorders,
    plan_allocation,
)

BER = Site("BER", "BER", "DE", "Berlin", priority=10)
MUC = Site("MUC", "MUC", "DE", "Bayern", priority=20)
HAM = Site("HAM", "HAM", "DE", "Hamburg", priority=5)
PAR = Site("PAR", "PAR", "FR", "Île-de-France", priority=1)
LON = Site("LON", "LON", "GB", None, priority=1, ships_to=frozenset({"GB", "IE"}))
OLD = Site("OLD", "OLD", "DE", "Berlin", priority=0, active=False)
SITES = [BER, MUC, HAM, PAR, LON, OLD]

BERLIN = Destination("DE", "Berlin")
MUNICH = Destination("DE", "bayern")  # regions compare without case
LYON = Destination("FR", "Auvergne-Rhône-Alpes")
DUBLIN = Destination("IE", None)
TOKYO = Destination("JP", None)


def stock(**levels: int) -> dict:
    """stock(BER_TENT=3) -> {("BER", "TENT"): 3}"""
    return {tuple(key.split("_", 1)): qty for key, qty in levels.items()}


def picks(plan) -> set[tuple[int, str, int]]:
    return {(p.line_no, p.warehouse_id, p.quantity) for p in plan.picks}


def backorders(plan) -> set[tuple[int, int]]:
    return {(b.line_no, b.quantity) for b in plan.backorders}


TENT_2 = [Need(1, "TENT", 2)]
TENT_MAT = [Need(1, "TENT", 2), Need(2, "MAT", 1)]

CASES = [
    # (name, needs, destination, available, expected picks, expected backorders)
    (
        "whole order from the only warehouse with all of it",
        TENT_MAT,
        BERLIN,
        stock(BER_TENT=2, MUC_TENT=5, MUC_MAT=1),
        {(1, "MUC", 2), (2, "MUC", 1)},
        set(),
    ),
    (
        "nearest: same region wins over priority",
        TENT_2,
        BERLIN,
        stock(BER_TENT=5, HAM_TENT=5, MUC_TENT=5),
        {(1, "BER", 2)},
        set(),
    ),
    (
        "nearest: region compared without case",
        TENT_2,
        MUNICH,
        stock(BER_TENT=5, HAM_TENT=5, MUC_TENT=5),
        {(1, "MUC", 2)},
        set(),
    ),
    (
        "nearest: same country, then priority",
        TENT_2,
        Destination("DE", "Sachsen"),
        stock(BER_TENT=5, HAM_TENT=5, MUC_TENT=5, PAR_TENT=5),
        {(1, "HAM", 2)},
        set(),
    ),
    (
        "same country beats a better priority abroad",
        TENT_2,
        LYON,
        stock(BER_TENT=5, PAR_TENT=5),
        {(1, "PAR", 2)},
        set(),
    ),
    (
        "abroad when nothing at home has it",
        TENT_2,
        LYON,
        stock(BER_TENT=5, PAR_TENT=1),
        {(1, "BER", 2)},
        set(),
    ),
    (
        "a whole order from afar beats a split at home",
        TENT_MAT,
        BERLIN,
        stock(BER_TENT=2, HAM_MAT=1, PAR_TENT=2, PAR_MAT=1),
        {(1, "PAR", 2), (2, "PAR", 1)},
        set(),
    ),
    (
        "split across the fewest warehouses",
        [Need(1, "TENT", 1), Need(2, "MAT", 1), Need(3, "LAMP", 1)],
        BERLIN,
        stock(BER_TENT=1, HAM_MAT=1, MUC_LAMP=1, PAR_MAT=1, PAR_LAMP=1),
        {(1, "BER", 1), (2, "PAR", 1), (3, "PAR", 1)},
        set(),
    ),
    (
        "split prefers the nearer pair among pairs",
        TENT_MAT,
        BERLIN,
        stock(BER_TENT=2, MUC_MAT=1, PAR_MAT=1),
        {(1, "BER", 2), (2, "MUC", 1)},
        set(),
    ),
    (
        "one line split when no warehouse has all its units",
        [Need(1, "TENT", 5)],
        BERLIN,
        stock(BER_TENT=3, MUC_TENT=2),
        {(1, "BER", 3), (1, "MUC", 2)},
        set(),
    ),
    ("backorder what nothing can fill", TENT_MAT, BERLIN, stock(BER_TENT=2), {(1, "BER", 2)}, {(2, 1)}),
    (
        "backorder the missing units only",
        [Need(1, "TENT", 5)],
        BERLIN,
        stock(BER_TENT=3),
        {(1, "BER", 3)},
        {(1, 2)},
    ),
    ("inactive warehouses are never used", TENT_2, BERLIN, stock(OLD_TENT=9), set(), {(1, 2)}),
    ("ships_to limits where a warehouse sends", TENT_2, BERLIN, stock(LON_TENT=9), set(), {(1, 2)}),
    ("ships_to admits its countries", TENT_2, DUBLIN, stock(LON_TENT=9, BER_TENT=9), {(1, "LON", 2)}, set()),
    ("nowhere ships there: all backordered", TENT_2, TOKYO, {}, set(), {(1, 2)}),
    (
        "negative figures count as nothing",
        TENT_2,
        BERLIN,
        stock(BER_TENT=-4, MUC_TENT=2),
        {(1, "MUC", 2)},
        set(),
    ),
    (
        "same SKU on two lines, one warehouse",
        [Need(1, "TENT", 2), Need(2, "TENT", 3)],
        BERLIN,
        stock(BER_TENT=4, MUC_TENT=5),
        {(1, "MUC", 2), (2, "MUC", 3)},
        set(),
    ),
]


@pytest.mark.parametrize(
    ("name", "needs", "destination", "available", "expected", "missing"), CASES, ids=[c[0] for c in CASES]
)
def test_routing_table(name, needs, destination, available, expected, missing):
    plan = plan_allocation(needs, destination, SITES, available)
    assert picks(plan) == expected
    assert backorders(plan) == missing
    assert plan.complete is (not missing)


def test_a_plan_never_takes_more_than_is_available():
    available = stock(BER_TENT=3, MUC_TENT=1, HAM_TENT=2)
    plan = plan_allocation([Need(1, "TENT", 4), Need(2, "TENT", 4)], BERLIN, SITES, available)
    taken: dict = {}
    for p in plan.picks:
        taken[(p.warehouse_id, p.sku)] = taken.get((p.warehouse_id, p.sku), 0) + p.quantity
    assert all(q <= available[k] for k, q in taken.items())
    assert sum(taken.values()) == 6 and backorders(plan) == {(2, 2)}


def test_many_warehouses_fall_back_to_a_greedy_cover():
    many = [Site(f"W{i:02}", f"W{i:02}", "DE", None, priority=i) for i in range(40)]
    needs = [Need(i, f"SKU{i}", 1) for i in range(1, 9)]
    available = {(f"W{i:02}", f"SKU{i % 8 + 1}"): 1 for i in range(40)}
    plan = plan_allocation(needs, Destination("DE"), many, available)
    assert plan.complete
    assert len(plan.warehouses) == 8


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def queued(
    order: str,
    qty: int,
    *,
    urgency: int = 0,
    minutes: int = 0,
    sku: str = "TENT",
    destination: Destination = BERLIN,
) -> QueuedBackorder:
    return QueuedBackorder(order, 1, sku, qty, urgency, T0 + dt.timedelta(minutes=minutes), destination)


ARRIVALS = [
    ("oldest first", [queued("new", 2, minutes=5), queued("old", 2)], stock(BER_TENT=2), {("old", "BER", 2)}),
    (
        "most urgent before oldest",
        [queued("old", 2), queued("urgent", 2, urgency=2, minutes=9)],
        stock(BER_TENT=3),
        {("urgent", "BER", 2), ("old", "BER", 1)},
    ),
    ("partial fill, the rest keeps waiting", [queued("a", 5)], stock(BER_TENT=3), {("a", "BER", 3)}),
    (
        "only orders the warehouse may ship to",
        [queued("jp", 1, destination=TOKYO), queued("ie", 1, minutes=1, destination=DUBLIN)],
        stock(LON_TENT=1),
        {("ie", "LON", 1)},
    ),
    (
        "other SKUs untouched",
        [queued("mat", 1, sku="MAT"), queued("tent", 1, minutes=1)],
        stock(BER_TENT=5),
        {("tent", "BER", 1)},
    ),
    (
        "nearest arrival first",
        [queued("a", 2, destination=MUNICH)],
        stock(BER_TENT=1, MUC_TENT=1),
        {("a", "MUC", 1), ("a", "BER", 1)},
    ),
]


@pytest.mark.parametrize(("name", "queue", "available", "expected"), ARRIVALS, ids=[c[0] for c in ARRIVALS])
def test_reallocation_on_arrival_table(name, queue, available, expected):
    fills = fill_backorders(queue, SITES, available)
    assert {(f.backorder.order_id, f.warehouse_id, f.quantity) for f in fills} == expected


# ---------------------------------------------------------------- daily cut-off

BERLIN_ZONE = "Europe/Berlin"
THREE_PM = dt.time(15, 0)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("name", "now", "zone", "cutoff", "expected"),
    [
        ("before the cut-off: today", utc("2026-11-26 13:59"), BERLIN_ZONE, THREE_PM, dt.date(2026, 11, 26)),
        # 14:30 UTC is 15:30 in Berlin: past the warehouse's own cut-off.
        (
            "after it, in the warehouse's zone",
            utc("2026-11-26 14:30"),
            BERLIN_ZONE,
            THREE_PM,
            dt.date(2026, 11, 27),
        ),
        (
            "the same instant in UTC is before 15:00",
            utc("2026-11-26 14:30"),
            "UTC",
            THREE_PM,
            dt.date(2026, 11, 26),
        ),
        (
            "Friday after the cut-off: Monday",
            utc("2026-11-27 16:00"),
            BERLIN_ZONE,
            THREE_PM,
            dt.date(2026, 11, 30),
        ),
        ("Saturday: Monday", utc("2026-11-28 09:00"), BERLIN_ZONE, THREE_PM, dt.date(2026, 11, 30)),
        ("no cut-off: the day it arrives", utc("2026-11-26 22:00"), BERLIN_ZONE, None, dt.date(2026, 11, 26)),
        # 23:30 UTC on Thursday is already Friday morning in Berlin.
        ("the local date counts", utc("2026-11-26 23:30"), BERLIN_ZONE, THREE_PM, dt.date(2026, 11, 27)),
        ("Sunday without a cut-off: Monday", utc("2026-11-29 12:00"), "UTC", None, dt.date(2026, 11, 30)),
    ],
)
def test_dispatch_day_table(name, now, zone, cutoff, expected):
    assert dispatch_day(now, zone, cutoff) == expected


LATE_BER = Site("BER", "BER", "DE", "Berlin", priority=10, cutoff=THREE_PM, ships_on=dt.date(2026, 11, 27))
OPEN_MUC = Site("MUC", "MUC", "DE", "Bayern", priority=20, cutoff=dt.time(18), ships_on=dt.date(2026, 11, 26))


@pytest.mark.parametrize(
    ("name", "ship_by", "expected"),
    [
        ("no deadline: the nearest, though it dispatches tomorrow", None, {(1, "BER", 2)}),
        ("must ship today: the warehouse still before its cut-off", dt.date(2026, 11, 26), {(1, "MUC", 2)}),
        ("a deadline both make: the nearest", dt.date(2026, 11, 27), {(1, "BER", 2)}),
    ],
)
def test_the_ship_by_date_and_cut_offs_choose_between_warehouses(name, ship_by, expected):
    destination = Destination("DE", "Berlin", ship_by=ship_by)
    plan = plan_allocation(TENT_2, destination, [LATE_BER, OPEN_MUC], stock(BER_TENT=5, MUC_TENT=5))
    assert picks(plan) == expected


def test_a_whole_order_from_a_late_warehouse_beats_a_split():
    destination = Destination("DE", "Berlin", ship_by=dt.date(2026, 11, 26))
    plan = plan_allocation(
        TENT_MAT, destination, [LATE_BER, OPEN_MUC], stock(BER_TENT=5, BER_MAT=1, MUC_TENT=5)
    )
    assert picks(plan) == {(1, "BER", 2), (2, "BER", 1)}
