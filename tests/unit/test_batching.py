"""Batches (core/batching.py): calls made together are served together, each answered alone."""

from __future__ import annotations

import asyncio

import pytest

from orderdesk.core.batching import Batches


class Recorder:
    """A `serve` that records its batches; an item named "bad" gets its own error."""

    def __init__(self, pause: float = 0.0) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.pause = pause

    async def __call__(self, context, key, items):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.batches.append((key, list(items)))
            await asyncio.sleep(self.pause)
            return [ValueError(f"{item} refused") if item == "bad" else f"{context}:{item}" for item in items]
        finally:
            self.in_flight -= 1


async def test_calls_made_together_share_a_batch_and_get_their_own_results():
    serve = Recorder(pause=0.01)
    batches = Batches(serve, largest=10, at_once=2)
    results = await asyncio.gather(*(batches.submit("db", "tenant", f"o{n}") for n in range(6)))
    assert results == [f"db:o{n}" for n in range(6)]
    # The first call's batch finds all six waiting; nothing is left for a second one.
    assert serve.batches == [("tenant", [f"o{n}" for n in range(6)])]


async def test_a_batch_holds_at_most_largest_and_at_most_at_once_run():
    serve = Recorder(pause=0.01)
    batches = Batches(serve, largest=3, at_once=2)
    results = await asyncio.gather(*(batches.submit("db", "t", f"o{n}") for n in range(10)))
    assert results == [f"db:o{n}" for n in range(10)]
    assert [len(items) for _, items in serve.batches] == [3, 3, 3, 1]
    assert [item for _, items in serve.batches for item in items] == [f"o{n}" for n in range(10)]
    assert serve.most_in_flight == 2


async def test_keys_are_served_apart():
    serve = Recorder()
    batches = Batches(serve, largest=10, at_once=1)
    a, b = await asyncio.gather(batches.submit("db", "A", "x"), batches.submit("db", "B", "x"))
    assert (a, b) == ("db:x", "db:x")
    assert sorted(serve.batches) == [("A", ["x"]), ("B", ["x"])]


async def test_an_item_asked_for_twice_is_served_again_in_a_later_batch():
    serve = Recorder()
    batches = Batches(serve, largest=10, at_once=1)
    await asyncio.gather(*(batches.submit("db", "t", item) for item in ["o1", "o2", "o1", "o3"]))
    assert serve.batches == [("t", ["o1", "o2", "o3"]), ("t", ["o1"])]


async def test_an_items_error_reaches_only_its_caller():
    batches = Batches(Recorder(), largest=10, at_once=1)
    results = await asyncio.gather(
        *(batches.submit("db", "t", item) for item in ["o1", "bad", "o2"]), return_exceptions=True
    )
    assert results[0] == "db:o1" and results[2] == "db:o2"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad refused"


async def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_is_served():
    calls = []

    async def serve(context, key, items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("the connection dropped")
        return [f"ok:{item}" for item in items]

    batches = Batches(serve, largest=2, at_once=1)
    results = await asyncio.gather(
        *(batches.submit("db", "t", f"o{n}") for n in range(3)), return_exceptions=True
    )
    assert [str(r) for r in results[:2]] == ["the connection dropped"] * 2
    assert results[2] == "ok:o2"
    # Nothing is left behind once the queue has run dry.
    assert await batches.submit("db", "t", "o9") == "ok:o9"
    assert calls[-1] == ["o9"]
    await asyncio.sleep(0)  # the last batch's task ends
    assert not batches._lines and not batches._tasks


async def test_an_item_in_a_batch_being_served_waits_for_that_batch_even_with_two_at_once():
    served = []

    async def serve(context, key, items):
        served.append(("start", list(items)))
        await asyncio.sleep(0.02)
        served.append(("end", list(items)))
        return list(items)

    batches = Batches(serve, largest=10, at_once=2)
    first = asyncio.create_task(batches.submit("db", "t", "o1"))
    await asyncio.sleep(0.005)  # o1's batch is being served
    again = await asyncio.gather(batches.submit("db", "t", "o1"), batches.submit("db", "t", "o2"))
    assert await first == "o1" and again == ["o1", "o2"]
    assert served[0] == ("start", ["o1"])
    # o2 went ahead in the second batch; o1 again only once its first batch had ended.
    assert served.index(("end", ["o1"])) < served.index(("start", ["o1"]), 1)
    assert ("start", ["o2"]) in served


async def test_a_batch_answering_for_the_wrong_number_of_items_fails_its_callers():
    async def serve(context, key, items):
        return ["one answer"]

    batches = Batches(serve, largest=10, at_once=1)
    results = await asyncio.gather(
        *(batches.submit("db", "t", f"o{n}") for n in range(2)), return_exceptions=True
    )
    assert [str(r) for r in results] == ["1 outcomes served for a batch of 2"] * 2


async def test_callers_of_stopped_batches_hear_it_instead_of_waiting_forever():
    started = asyncio.Event()

    async def serve(context, key, items):
        started.set()
        await asyncio.sleep(60)
        return list(items)

    batches = Batches(serve, largest=1, at_once=1)
    calls = [asyncio.create_task(batches.submit("db", "t", f"o{n}")) for n in range(3)]
    await started.wait()
    for task in list(batches._tasks):  # as when the process shuts down
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=5)
    assert [str(r) for r in results] == [
        "the batch serving this call was stopped",
        "the batches of these calls were stopped",
        "the batches of these calls were stopped",
    ]
    assert not batches._lines


async def test_a_caller_that_gave_up_is_left_out_of_later_batches():
    serve = Recorder(pause=0.05)
    batches = Batches(serve, largest=1, at_once=1)
    first = asyncio.create_task(batches.submit("db", "t", "o1"))
    gone = asyncio.create_task(batches.submit("db", "t", "o2"))
    last = asyncio.create_task(batches.submit("db", "t", "o3"))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await first == "db:o1" and await last == "db:o3"
    assert [items for _, items in serve.batches] == [["o1"], ["o3"]]


def test_sizes_below_one_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        Batches(Recorder(), largest=0, at_once=1)
    with pytest.raises(ValueError, match="at least one"):
        Batches(Recorder(), largest=1, at_once=0)
