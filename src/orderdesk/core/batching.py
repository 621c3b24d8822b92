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
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")

# `serve(context, key, items)` answers every item, in order: a result, or the exception
# that item's caller should see. If it raises, every caller in the batch sees that error.
Serve = Callable[[Any, Key, list[Item]], Awaitable[Sequence[Result | BaseException]]]


@dataclass(slots=True)
class _Line:
    """The calls of one key: who waits, and how many batches are being served."""

    waiting: deque[tuple[Item, asyncio.Future]] = field(default_factory=deque)
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
        the batch that starts with this call is served with."""
        future = asyncio.get_running_loop().create_future()
        line = self._lines.setdefault(key, _Line())
        line.waiting.append((item, future))
        if line.serving < self.at_once:
            line.serving += 1
            task = asyncio.create_task(self._drain(context, key, line))
            self._tasks.add(task)  # a task nobody refers to may be collected mid-way
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, context: Any, key: Key, line: _Line) -> None:
        """Serve batches of `key` until nobody waits."""
        try:
            while line.waiting:
                await self._serve_batch(context, key, self._next_batch(line))
        finally:
            line.serving -= 1
            if not line.serving and not line.waiting:
                self._lines.pop(key, None)

    def _next_batch(self, line: _Line) -> list[tuple[Item, asyncio.Future]]:
        """The oldest waiting calls, each item once: a repeated item waits for a later
        batch, so it is served after the first has been written."""
        batch: list[tuple[Item, asyncio.Future]] = []
        items: set[Item] = set()
        later: list[tuple[Item, asyncio.Future]] = []
        while line.waiting and len(batch) < self.largest:
            waiting = line.waiting.popleft()
            if waiting[1].done():  # its caller gave up (cancelled)
                continue
            if waiting[0] in items:
                later.append(waiting)
            else:
                items.add(waiting[0])
                batch.append(waiting)
        line.waiting.extendleft(reversed(later))
        return batch

    async def _serve_batch(self, context: Any, key: Key, batch: list[tuple[Item, asyncio.Future]]) -> None:
        if not batch:
            return
        try:
            outcomes = await self._serve(context, key, [item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes served for a batch of {len(batch)}")
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise  # cancellation, interpreter exit: not the batch's to swallow
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
