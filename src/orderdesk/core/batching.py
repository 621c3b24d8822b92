"""Calls that arrive while others like them are being served, served together.

Some writes fight over a few hot rows: every allocation of a popular SKU locks the
same stock rows. Run one transaction per call and each pays its own round trips,
lock queue and commit while the rest wait in line for the rows. Served in batches,
a handful of transactions at a time each take the rows once for every call that
queued meanwhile (the way a database groups commits). A caller still gets its own
result or its own error, once its batch has committed.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

Key = TypeVar("Key", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")

# `serve(context, key, items)` answers every item, in order: a result, or the exception
# that item's caller should see. If it raises, every caller in the batch sees that error.
Serve = Callable[[Any, Key, list[Item]], Awaitable[Sequence[Result | BaseException]]]


class _Call(NamedTuple):
    item: Hashable
    future: asyncio.Future
    context: Any


@dataclass(slots=True)
class _Line:
    """The calls of one key: who waits, which items are being served, how many batches."""

    waiting: deque[_Call] = field(default_factory=deque)
    in_flight: set = field(default_factory=set)
    serving: int = 0


class Batches(Generic[Key, Item, Result]):
    """Serve `submit`ted items per key in batches of at most `largest` distinct items,
    with at most `at_once` batches of a key in flight. One instance per process (and
    event loop); nothing is kept once a key's queue runs dry."""

    def __init__(self, serve: Serve, *, largest: int, at_once: int) -> None:
        if largest < 1 or at_once < 1:
            raise ValueError("a batch holds at least one item, and at least one batch runs")
        self._serve = serve
        self.largest = largest
        self.at_once = at_once
        self._lines: dict[Key, _Line] = {}
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, context: Any, key: Key, item: Item) -> Result:
        """`item`'s result once its batch is served. `context` (a database, say) is what
        a batch started for this call is served with."""
        future = asyncio.get_running_loop().create_future()
        line = self._lines.setdefault(key, _Line())
        line.waiting.append(_Call(item, future, context))
        if line.serving < self.at_once:
            self._start(key, line)
        return await future

    def _start(self, key: Key, line: _Line) -> None:
        line.serving += 1
        task = asyncio.create_task(self._drain(line.waiting[0].context, key, line))
        self._tasks.add(task)  # a task nobody refers to may be collected mid-way
        task.add_done_callback(functools.partial(self._finished, key, line))

    async def _drain(self, context: Any, key: Key, line: _Line) -> None:
        """Serve batches of `key` while any call waits that no other batch holds."""
        while batch := self._next_batch(line):
            await self._serve_batch(context, key, line, batch)

    def _finished(self, key: Key, line: _Line, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        line.serving -= 1
        line.waiting = deque(call for call in line.waiting if not call.future.done())
        if task.cancelled() or task.exception() is not None:
            if not line.serving:  # nobody is left to serve the calls still waiting
                stopped = RuntimeError("the batches of these calls were stopped")
                while line.waiting:
                    call = line.waiting.popleft()
                    if not call.future.done():
                        call.future.set_exception(stopped)
        elif line.serving < self.at_once and any(
            call.item not in line.in_flight and not call.future.done() for call in line.waiting
        ):
            self._start(key, line)  # a call came after this batch's last look at the queue
        if not line.serving and not line.waiting:
            self._lines.pop(key, None)

    def _next_batch(self, line: _Line) -> list[_Call]:
        """The oldest waiting calls, each item once. An item asked for again while it is
        in a batch (this one or another being served) waits for a later batch, so it is
        served after the first has been written."""
        batch: list[_Call] = []
        later: list[_Call] = []
        while line.waiting and len(batch) < self.largest:
            call = line.waiting.popleft()
            if call.future.done():  # its caller gave up (cancelled)
                continue
            if call.item in line.in_flight:
                later.append(call)
            else:
                line.in_flight.add(call.item)
                batch.append(call)
        line.waiting.extendleft(reversed(later))
        return batch

    async def _serve_batch(self, context: Any, key: Key, line: _Line, batch: list[_Call]) -> None:
        try:
            outcomes = await self._serve(context, key, [call.item for call in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes served for a batch of {len(batch)}")
        except Exception as error:
            outcomes = [error] * len(batch)
        except BaseException:  # cancelled: the callers' own tasks were not
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(RuntimeError("the batch serving this call was stopped"))
            raise
        finally:
            line.in_flight.difference_update(call.item for call in batch)
        for call, outcome in zip(batch, outcomes, strict=True):
            if call.future.done():
                continue
            if isinstance(outcome, BaseException):
                call.future.set_exception(outcome)
            else:
                call.future.set_result(outcome)
