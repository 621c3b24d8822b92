"""Domain events are handled in the recording transaction, cascades included, cycles refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orderdesk.core import events


@dataclass
class Ping:
    n: int


@dataclass
class Pong:
    n: int


class FakeSession:
    def __init__(self) -> None:
        self.info: dict = {}


@pytest.fixture(autouse=True)
def clean_handlers():
    saved = dict(events._handlers)
    events.unsubscribe_all()
    yield
    events.unsubscribe_all()
    events._handlers.update(saved)


async def test_handlers_run_for_their_type_and_cascade():
    seen = []

    async def on_ping(session, event):
        seen.append(("ping", event.n))
        events.record(session, Pong(event.n + 1))

    async def on_pong(session, event):
        seen.append(("pong", event.n))

    events.subscribe(Ping, on_ping)
    events.subscribe(Ping, on_ping)  # subscribing twice is harmless
    events.subscribe(Pong, on_pong)
    session = FakeSession()
    events.record(session, Ping(1))
    await events.dispatch(session)
    assert seen == [("ping", 1), ("pong", 2)]


async def test_a_cycle_fails_loudly():
    async def echo(session, event):
        events.record(session, Ping(event.n + 1))

    events.subscribe(Ping, echo)
    session = FakeSession()
    events.record(session, Ping(0))
    with pytest.raises(RuntimeError, match="handler cycle"):
        await events.dispatch(session)
