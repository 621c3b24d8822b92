"""Routing rules: which warehouse ships which units of an order. Pure: no I/O, no ORM.

The rules, in order:

1. Only active warehouses that ship to the destination country are candidates.
2. Candidates are ranked by nearness: same country first, then same region within
   that country, then the warehouse's priority (lower first), then its code. When the
   order must ship by a date, warehouses whose next dispatch day (after their daily
   cut-off, in their own time zone) is later than that date rank after those that
   make it.
3. One warehouse that can ship the whole order wins: the best-ranked such one.
4. Otherwise the order is split across the fewest warehouses that can ship all of
   it together (among sets of the same size, the best-ranked set).
5. When even every candidate together cannot, the units they can fill are taken
   from as few warehouses as possible and the rest is backordered.
6. Backorders are filled as stock arrives: most urgent orders first, then oldest.

Within the chosen warehouses a line ships whole from the best-ranked warehouse
that has enough; only when none has enough is a line split.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

# Exhaustive search over warehouse sets stops after this many sets (a tenant with
# dozens of warehouses); a greedy cover takes over from there.
MAX_SETS_CHECKED = 5000

Key = tuple[Hashable, str]  # (warehouse id, sku)


@dataclass(frozen=True, slots=True)
class Site:
    """A warehouse as routing sees it."""

    id: Hashable
    code: str
    country: str
    region: str | None = None
    priority: int = 100
    ships_to: frozenset[str] = frozenset()  # empty: ships anywhere
    active: bool = True
    # Daily cut-off in the warehouse's zone, and the day an order routed now leaves it
    # (see `dispatch_day`; None: not known).
    cutoff: dt.time | None = None
    time_zone: str = "UTC"
    ships_on: dt.date | None = None

    def serves(self, country: str) -> bool:
        return self.active and (not self.ships_to or country in self.ships_to)


@dataclass(frozen=True, slots=True)
class Destination:
    country: str
    region: str | None = None
    ship_by: dt.date | None = None  # the order's own deadline, if it has one


def dispatch_day(now: dt.datetime, time_zone: str, cutoff: dt.time | None) -> dt.date:
    """The working day (Monday to Friday, in the warehouse's zone) on which an order
    routed at `now` leaves: today before the daily cut-off, the next working day after
    it. Without a cut-off, orders leave the day they arrive (or the next working day)."""
    local = now.astimezone(ZoneInfo(time_zone))
    day = local.date()
    if cutoff is not None and local.time() >= cutoff:
        day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


@dataclass(frozen=True, slots=True)
class Need:
    """Units of one order line still to be allocated."""

    line_no: int
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Pick:
    """Units of one line to reserve at one warehouse."""

    line_no: int
    sku: str
    warehouse_id: Hashable
    quantity: int


@dataclass(frozen=True, slots=True)
class Plan:
    picks: tuple[Pick, ...]
    backorders: tuple[Need, ...]  # quantities that nothing can fill now

    @property
    def complete(self) -> bool:
        return not self.backorders

    @property
    def warehouses(self) -> tuple[Hashable, ...]:
        """The warehouses used, in the order they were first picked."""
        return tuple(dict.fromkeys(p.warehouse_id for p in self.picks))


def _same_region(site: Site, destination: Destination) -> bool:
    return bool(site.region and destination.region) and (
        site.region.strip().casefold() == destination.region.strip().casefold()
    )


def _misses_ship_by(site: Site, destination: Destination) -> bool:
    return bool(destination.ship_by and site.ships_on and site.ships_on > destination.ship_by)


def rank(site: Site, destination: Destination) -> tuple:
    """Sort key: in time for the order's ship-by date, then nearer, then higher priority."""
    same_country = site.country == destination.country
    return (
        _misses_ship_by(site, destination),
        not same_country,
        not (same_country and _same_region(site, destination)),
        site.priority,
        site.code,
    )


def candidates(sites: Iterable[Site], destination: Destination) -> list[Site]:
    return sorted((s for s in sites if s.serves(destination.country)), key=lambda s: rank(s, destination))


def _demand(needs: Sequence[Need]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for need in needs:
        total[need.sku] += need.quantity
    return total


def _covers(chosen: Sequence[Site], demand: Mapping[str, int], available: Mapping[Key, int]) -> bool:
    return all(
        sum(max(available.get((s.id, sku), 0), 0) for s in chosen) >= qty for sku, qty in demand.items()
    )


def _fewest_covering(
    ranked: Sequence[Site], demand: Mapping[str, int], available: Mapping[Key, int]
) -> list[Site] | None:
    """The smallest, best-ranked set of warehouses that covers the demand, or None."""
    checked = 0
    for size in range(1, len(ranked) + 1):
        for chosen in itertools.combinations(ranked, size):
            if _covers(chosen, demand, available):
                return list(chosen)
            checked += 1
            if checked >= MAX_SETS_CHECKED:
                return None
    return None


def _greedy_cover(
    ranked: Sequence[Site], demand: Mapping[str, int], available: Mapping[Key, int]
) -> list[Site]:
    """Add the warehouse that fills the most still-missing units until none adds any."""
    missing = dict(demand)
    chosen: list[Site] = []
    left = list(ranked)
    while left and any(missing.values()):
        gains = [
            sum(min(q, max(available.get((s.id, sku), 0), 0)) for sku, q in missing.items()) for s in left
        ]
        best = max(range(len(left)), key=lambda i: (gains[i], -i))
        if gains[best] == 0:
            break
        site = left.pop(best)
        chosen.append(site)
        for sku, q in missing.items():
            missing[sku] = q - min(q, max(available.get((site.id, sku), 0), 0))
    return sorted(chosen, key=lambda s: ranked.index(s))


def _assign(needs: Sequence[Need], chosen: Sequence[Site], available: Mapping[Key, int]) -> Plan:
    left = {(s.id, n.sku): max(available.get((s.id, n.sku), 0), 0) for s in chosen for n in needs}
    picks: list[Pick] = []
    backorders: list[Need] = []
    for need in sorted(needs, key=lambda n: n.line_no):
        whole = next((s for s in chosen if left[(s.id, need.sku)] >= need.quantity), None)
        if whole is not None:
            left[(whole.id, need.sku)] -= need.quantity
            picks.append(Pick(need.line_no, need.sku, whole.id, need.quantity))
            continue
        wanted = need.quantity
        for site in chosen:
            take = min(wanted, left[(site.id, need.sku)])
            if take:
                left[(site.id, need.sku)] -= take
                picks.append(Pick(need.line_no, need.sku, site.id, take))
                wanted -= take
        if wanted:
            backorders.append(Need(need.line_no, need.sku, wanted))
    return Plan(tuple(picks), tuple(backorders))


def plan_allocation(
    needs: Sequence[Need], destination: Destination, sites: Iterable[Site], available: Mapping[Key, int]
) -> Plan:
    """Where each needed unit ships from, and what must wait (see the rules above)."""
    needs = [n for n in needs if n.quantity > 0]
    if not needs:
        return Plan((), ())
    ranked = candidates(sites, destination)
    demand = _demand(needs)
    chosen = _fewest_covering(ranked, demand, available)
    if chosen is None:
        chosen = _greedy_cover(ranked, demand, available)
    return _assign(needs, chosen, available)


@dataclass(frozen=True, slots=True)
class QueuedBackorder:
    """A backordered line waiting for stock, with what decides its turn."""

    order_id: Hashable
    line_no: int
    sku: str
    quantity: int
    urgency: int  # higher first
    created_at: dt.datetime  # older first
    destination: Destination


@dataclass(frozen=True, slots=True)
class Fill:
    backorder: QueuedBackorder
    warehouse_id: Hashable
    quantity: int


def turn(backorder: QueuedBackorder) -> tuple:
    return (-backorder.urgency, backorder.created_at, str(backorder.order_id), backorder.line_no)


def fill_backorders(
    queue: Iterable[QueuedBackorder], sites: Iterable[Site], available: Mapping[Key, int]
) -> list[Fill]:
    """Give newly available units to waiting lines: most urgent, then oldest, first.

    Only the warehouses in `available` are drawn from (the ones whose stock changed),
    each for the orders it may ship to, nearest first.
    """
    left = {key: max(qty, 0) for key, qty in available.items()}
    site_list = list(sites)
    fills: list[Fill] = []
    for backorder in sorted(queue, key=turn):
        wanted = backorder.quantity
        for site in candidates(site_list, backorder.destination):
            key = (site.id, backorder.sku)
            take = min(wanted, left.get(key, 0))
            if take:
                left[key] -= take
                fills.append(Fill(backorder, site.id, take))
                wanted -= take
            if not wanted:
                break
    return fills
