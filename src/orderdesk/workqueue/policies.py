"""SLA clocks, tenant SLA policies and the priority score. Pure: no I/O, no ORM.

Business time
    A tenant's SLA counts *business* seconds: only inside its opening windows
    (several per weekday, e.g. 08:00-12:00 and 13:00-17:30), in its time zone, and
    never on its holidays. Windows are wall-clock times, so a window on the day
    clocks change is shorter or longer in real seconds; all arithmetic is done on
    UTC instants, which makes daylight-saving changes exact.

The clock of a work item
    `target` business seconds from its start. It pauses while the item waits on the
    customer or the client (the seconds used so far are banked in `consumed`), and
    runs again from the moment it resumes. The item is *at risk* once less than
    `at_risk_fraction` (20 %) of the target is left, and *breached* once nothing is.

The priority score
    Items are offered most urgent first, by this key (smallest first):

    1. due time: the earliest breach first (breached items, due in the past, jump
       to the front; a paused clock has no due time and sorts last);
    2. order priority: urgent, then high, then normal;
    3. order value: the larger total first (minor units, compared as numbers);
    4. client tier: tier 1 before tier 2 before tier 3;
    5. age: the oldest item first (then the id, so that the order is total).

    The order priority also shortens the due time itself, through the policy's
    target per priority; the later keys decide between items due at the same
    moment, as happens with batches (CSV imports, shop bursts). `claim_next` in
    `services.py` uses exactly this order in SQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orderdesk.core.errors import FieldError
from orderdesk.workqueue.states import WorkItemKind

UTC = dt.UTC
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("normal", "high", "urgent")
PRIORITY_RANK = {"normal": 1, "high": 2, "urgent": 3}
# A calendar with no business time this far ahead is a mistake, not a very long SLA.
HORIZON_DAYS = 3 * 366
DEFAULT_AT_RISK_PERCENT = 20
DEFAULT_CLIENT_TIER = 2
MAX_TARGET_MINUTES = 60 * 24 * 60  # sixty 24-hour days

# Business minutes per kind and order priority (normal, high, urgent).
DEFAULT_TARGETS: dict[str, dict[str, int]] = {
    WorkItemKind.ORDER_ENTRY: {"normal": 120, "high": 60, "urgent": 30},
    WorkItemKind.VERIFICATION: {"normal": 240, "high": 120, "urgent": 60},
    WorkItemKind.EXCEPTION: {"normal": 480, "high": 240, "urgent": 120},
    WorkItemKind.CUSTOMER_MESSAGE: {"normal": 240, "high": 120, "urgent": 60},
    WorkItemKind.TRACKING_FOLLOW_UP: {"normal": 960, "high": 480, "urgent": 240},
    WorkItemKind.RETURN: {"normal": 960, "high": 480, "urgent": 240},
}
# Wall-clock hours an order may sit in one status before the operations view calls it stuck.
DEFAULT_STUCK_AFTER_HOURS: dict[str, int] = {
    "captured": 1,
    "awaiting_verification": 8,
    "verified": 8,
    "allocated": 24,
    "backordered": 120,
    "picking": 24,
    "packed": 24,
    "partially_shipped": 72,
    "shipped": 240,
    "return_requested": 72,
    "return_received": 72,
}
MAX_STUCK_HOURS = 90 * 24
DEFAULT_HOURS: dict[str, list[str]] = {
    **{day: ["08:00-18:00"] for day in WEEKDAYS[:5]},
    "sat": [],
    "sun": [],
}


# ---------------------------------------------------------------- business calendar


@dataclass(frozen=True, slots=True)
class Window:
    """Opening hours within one day, wall-clock time; `end=None` means midnight (24:00)."""

    start: dt.time
    end: dt.time | None

    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}" if self.end else f"{self.start:%H:%M}-24:00"


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_window(text: str) -> Window:
    """'08:00-12:30' → Window. Raises ValueError for anything else (end after start, ≤ 24:00)."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a window like 08:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if not (0 <= h1 <= 23 and 0 <= m1 <= 59 and 0 <= m2 <= 59 and (h2 <= 23 or (h2 == 24 and m2 == 0))):
        raise ValueError(f"{text!r} is not a valid time range")
    start = dt.time(h1, m1)
    end = None if h2 == 24 else dt.time(h2, m2)
    if end is not None and end <= start:
        raise ValueError(f"{text!r} ends before it starts (use 24:00 for midnight)")
    return Window(start, end)


@dataclass(frozen=True)
class BusinessCalendar:
    """When the tenant's SLA clock runs: weekly windows in a time zone, minus holidays."""

    time_zone: str
    week: tuple[tuple[Window, ...], ...]  # seven entries, Monday first
    holidays: frozenset[dt.date] = frozenset()

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a week has seven days")
        if not any(self.week):
            raise ValueError("the calendar has no business hours at all")
        for day in self.week:
            ordered = sorted(day, key=lambda w: w.start)
            for before, after in itertools.pairwise(ordered):
                if before.end is None or before.end > after.start:
                    raise ValueError(f"windows {before.label()} and {after.label()} overlap")

    @classmethod
    def always_open(cls, time_zone: str = "UTC") -> BusinessCalendar:
        return cls(time_zone, tuple((Window(dt.time(0), None),) for _ in WEEKDAYS))

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def _always_open(self) -> bool:
        return not self.holidays and all(day == (Window(dt.time(0), None),) for day in self.week)

    def intervals(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """The day's business intervals as UTC instants, in order (none on a holiday)."""
        if day in self.holidays:
            return []
        result = []
        for window in sorted(self.week[day.weekday()], key=lambda w: w.start):
            start = dt.datetime.combine(day, window.start, tzinfo=self.tz).astimezone(UTC)
            end_day, end_time = (day, window.end) if window.end else (day + dt.timedelta(days=1), dt.time(0))
            end = dt.datetime.combine(end_day, end_time, tzinfo=self.tz).astimezone(UTC)
            if end > start:  # a window swallowed by a clock change is simply empty
                result.append((start, end))
        return result

    def _local_date(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(self.tz).date()

    def add(self, start: dt.datetime, seconds: float) -> dt.datetime:
        """The instant `seconds` business seconds after `start` (before it when negative).

        Zero gives `start` itself, even outside business hours.
        Raises ValueError when no business time exists within the horizon.
        """
        _require_aware(start)
        start = start.astimezone(UTC)
        if seconds == 0:
            return start
        if self._always_open:
            return start + dt.timedelta(seconds=seconds)
        if seconds > 0:
            return self._forward(start, seconds)
        return self._backward(start, -seconds)

    def _forward(self, start: dt.datetime, seconds: float) -> dt.datetime:
        day = self._local_date(start)
        left = seconds
        for _ in range(HORIZON_DAYS):
            for open_at, close_at in self.intervals(day):
                if close_at <= start:
                    continue
                begin = max(open_at, start)
                available = (close_at - begin).total_seconds()
                if left <= available:
                    return begin + dt.timedelta(seconds=left)
                left -= available
            day += dt.timedelta(days=1)
        raise ValueError("no business hours within three years")

    def _backward(self, start: dt.datetime, seconds: float) -> dt.datetime:
        day = self._local_date(start)
        left = seconds
        for _ in range(HORIZON_DAYS):
            for open_at, close_at in reversed(self.intervals(day)):
                if open_at >= start:
                    continue
                end = min(close_at, start)
                available = (end - open_at).total_seconds()
                if left <= available:
                    return end - dt.timedelta(seconds=left)
                left -= available
            day -= dt.timedelta(days=1)
        raise ValueError("no business hours within three years")

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> float:
        """Business seconds between two instants (negative when `end` is before `start`)."""
        _require_aware(start)
        _require_aware(end)
        if end < start:
            return -self.elapsed(end, start)
        if self._always_open:
            return (end - start).total_seconds()
        total = 0.0
        day, last = self._local_date(start), self._local_date(end)
        while day <= last:
            for open_at, close_at in self.intervals(day):
                overlap = (min(close_at, end) - max(open_at, start)).total_seconds()
                if overlap > 0:
                    total += overlap
            day += dt.timedelta(days=1)
        return total


def _require_aware(value: dt.datetime) -> None:
    if value.tzinfo is None:
        raise ValueError("SLA arithmetic needs time-zone-aware datetimes")


# ---------------------------------------------------------------- the clock of one item


@dataclass(frozen=True, slots=True)
class SlaClock:
    """`target` business seconds; `consumed` banked while paused; running since when (or paused)."""

    target_seconds: int
    consumed_seconds: int = 0
    running_since: dt.datetime | None = None

    @property
    def paused(self) -> bool:
        return self.running_since is None

    def used(self, calendar: BusinessCalendar, now: dt.datetime) -> float:
        if self.running_since is None:
            return float(self.consumed_seconds)
        return self.consumed_seconds + max(0.0, calendar.elapsed(self.running_since, now))

    def remaining(self, calendar: BusinessCalendar, now: dt.datetime) -> float:
        return self.target_seconds - self.used(calendar, now)

    def due_at(self, calendar: BusinessCalendar) -> dt.datetime | None:
        """When the target runs out; in the past once breached; None while paused."""
        if self.running_since is None:
            return None
        return calendar.add(self.running_since, self.target_seconds - self.consumed_seconds)

    def at_risk_at(self, calendar: BusinessCalendar, fraction: float) -> dt.datetime | None:
        """When less than `fraction` of the target is left; None while paused."""
        if self.running_since is None:
            return None
        threshold = math.ceil(self.target_seconds * (1 - fraction))
        return calendar.add(self.running_since, threshold - self.consumed_seconds)

    def pause(self, calendar: BusinessCalendar, now: dt.datetime) -> SlaClock:
        if self.running_since is None:
            return self
        return SlaClock(self.target_seconds, round(self.used(calendar, now)), None)

    def resume(self, now: dt.datetime) -> SlaClock:
        if self.running_since is not None:
            return self
        return replace(self, running_since=now)


@dataclass(frozen=True, slots=True)
class SlaState:
    due_at: dt.datetime | None
    at_risk_at: dt.datetime | None
    remaining_seconds: float
    at_risk: bool
    breached: bool


def sla_state(
    calendar: BusinessCalendar, clock: SlaClock, now: dt.datetime, fraction: float = 0.2
) -> SlaState:
    """The clock's due time, risk and breach at `now`."""
    remaining = clock.remaining(calendar, now)
    breached = remaining <= 0
    at_risk = not breached and remaining < clock.target_seconds * fraction
    return SlaState(
        clock.due_at(calendar), clock.at_risk_at(calendar, fraction), remaining, at_risk, breached
    )


# ---------------------------------------------------------------- a tenant's policy


@dataclass(frozen=True)
class SlaPolicy:
    calendar: BusinessCalendar
    targets: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: DEFAULT_TARGETS)
    at_risk_percent: int = DEFAULT_AT_RISK_PERCENT
    client_tier: int = DEFAULT_CLIENT_TIER
    stuck_after_hours: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_STUCK_AFTER_HOURS))

    @property
    def at_risk_fraction(self) -> float:
        return self.at_risk_percent / 100

    def target_seconds(self, kind: str, priority: str) -> int:
        by_priority = self.targets.get(str(kind)) or DEFAULT_TARGETS[WorkItemKind(kind)]
        minutes = by_priority.get(str(priority), by_priority.get("normal"))
        return int(minutes) * 60

    def start_clock(self, kind: str, priority: str, now: dt.datetime) -> SlaClock:
        return SlaClock(self.target_seconds(kind, priority), 0, now)

    def document(self) -> dict:
        """The policy as stored and edited: plain JSON values."""
        return {
            "time_zone": self.calendar.time_zone,
            "business_hours": {
                day: [w.label() for w in sorted(self.calendar.week[i], key=lambda w: w.start)]
                for i, day in enumerate(WEEKDAYS)
            },
            "holidays": sorted(d.isoformat() for d in self.calendar.holidays),
            "targets": {str(k): dict(v) for k, v in self.targets.items()},
            "at_risk_percent": self.at_risk_percent,
            "client_tier": self.client_tier,
            "stuck_after_hours": dict(self.stuck_after_hours),
        }


def default_policy(time_zone: str = "UTC") -> SlaPolicy:
    """Monday to Friday 08:00-18:00 in the tenant's zone, no holidays, the default targets."""
    return parse_policy({"time_zone": time_zone})


def parse_policy(document: Mapping) -> SlaPolicy:
    """A policy from its JSON form; missing parts take the defaults.

    Raises PolicyInvalid listing every problem (field names as in the document).
    """
    problems: list[FieldError] = []
    time_zone = str(document.get("time_zone") or "UTC")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(FieldError("time_zone", f"{time_zone!r} is not an IANA time zone"))
        time_zone = "UTC"

    hours = document.get("business_hours") or DEFAULT_HOURS
    week: list[tuple[Window, ...]] = []
    if not isinstance(hours, Mapping):
        problems.append(FieldError("business_hours", "must map weekdays (mon…sun) to lists of windows"))
        hours = DEFAULT_HOURS
    for name in hours:
        if name not in WEEKDAYS:
            problems.append(FieldError(f"business_hours.{name}", "is not a weekday (mon, tue, … sun)"))
    for day in WEEKDAYS:
        windows = []
        for text in hours.get(day) or []:
            try:
                windows.append(parse_window(str(text)))
            except ValueError as exc:
                problems.append(FieldError(f"business_hours.{day}", str(exc)))
        ordered = sorted(windows, key=lambda w: w.start)
        for before, after in itertools.pairwise(ordered):
            if before.end is None or before.end > after.start:
                problems.append(
                    FieldError(
                        f"business_hours.{day}", f"windows {before.label()} and {after.label()} overlap"
                    )
                )
        week.append(tuple(ordered))
    if not any(week):
        problems.append(FieldError("business_hours", "needs at least one window in the week"))

    holidays = set()
    for raw in document.get("holidays") or []:
        try:
            holidays.add(raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw)))
        except ValueError:
            problems.append(FieldError("holidays", f"{raw!r} is not a date like 2026-12-25"))

    targets: dict[str, dict[str, int]] = {str(k): dict(v) for k, v in DEFAULT_TARGETS.items()}
    raw_targets = document.get("targets") or {}
    if not isinstance(raw_targets, Mapping):
        problems.append(FieldError("targets", "must map work kinds to minutes per priority"))
        raw_targets = {}
    kinds = {k.value for k in WorkItemKind}
    for kind, by_priority in raw_targets.items():
        if kind not in kinds:
            problems.append(FieldError(f"targets.{kind}", "is not a kind of work item"))
            continue
        if not isinstance(by_priority, Mapping):
            problems.append(FieldError(f"targets.{kind}", "must map priorities to minutes"))
            continue
        for priority, minutes in by_priority.items():
            name = f"targets.{kind}.{priority}"
            if priority not in PRIORITIES:
                problems.append(FieldError(name, "is not a priority (normal, high, urgent)"))
            elif (
                isinstance(minutes, bool)
                or not isinstance(minutes, int)
                or not 1 <= minutes <= MAX_TARGET_MINUTES
            ):
                problems.append(FieldError(name, f"must be whole minutes between 1 and {MAX_TARGET_MINUTES}"))
            else:
                targets[kind][priority] = minutes

    at_risk = document.get("at_risk_percent", DEFAULT_AT_RISK_PERCENT)
    if isinstance(at_risk, bool) or not isinstance(at_risk, int) or not 1 <= at_risk <= 90:
        problems.append(FieldError("at_risk_percent", "must be a whole percentage between 1 and 90"))
        at_risk = DEFAULT_AT_RISK_PERCENT
    tier = document.get("client_tier", DEFAULT_CLIENT_TIER)
    if isinstance(tier, bool) or not isinstance(tier, int) or tier not in (1, 2, 3):
        problems.append(FieldError("client_tier", "must be 1, 2 or 3 (1 is the most important)"))
        tier = DEFAULT_CLIENT_TIER
    stuck = dict(DEFAULT_STUCK_AFTER_HOURS)
    raw_stuck = document.get("stuck_after_hours") or {}
    if not isinstance(raw_stuck, Mapping):
        problems.append(FieldError("stuck_after_hours", "must map order statuses to hours"))
        raw_stuck = {}
    for status, hours in raw_stuck.items():
        name = f"stuck_after_hours.{status}"
        if status not in DEFAULT_STUCK_AFTER_HOURS:
            problems.append(FieldError(name, "is not an order status that can be stuck"))
        elif isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_STUCK_HOURS:
            problems.append(FieldError(name, f"must be whole hours between 1 and {MAX_STUCK_HOURS}"))
        else:
            stuck[status] = hours
    if problems:
        raise PolicyInvalid(problems)
    return SlaPolicy(
        calendar=BusinessCalendar(time_zone, tuple(week), frozenset(holidays)),
        targets=targets,
        at_risk_percent=at_risk,
        client_tier=tier,
        stuck_after_hours=stuck,
    )


class PolicyInvalid(ValueError):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field} {e.message}" for e in errors))
        self.errors = errors


# ---------------------------------------------------------------- priority


# Sorts after every real due time: a paused clock has none.
_NO_DUE = dt.datetime.max.replace(tzinfo=UTC)


def priority_key(
    due_at: dt.datetime | None,
    priority: str,
    value_minor: int,
    client_tier: int,
    created_at: dt.datetime,
    item_id: object = "",
) -> tuple:
    """The documented priority score as a sort key: smaller is more urgent (see the module doc)."""
    return (
        due_at or _NO_DUE,
        -PRIORITY_RANK.get(str(priority), 1),
        -value_minor,
        client_tier,
        created_at,
        str(item_id),
    )
