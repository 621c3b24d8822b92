"""Webhook delivery survives what production throws at it: killed workers, an emptied Redis,
receivers that fail and time out. At the end, every committed outbox event was delivered."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core.tenancy import Scope
from orderdesk.integrations import endpoints as endpoint_service
from orderdesk.integrations.schemas import EndpointCreate
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel
from orderdesk.orders.schemas import OrderCreate
from tests.conftest import make_tenant
from tests.integration.test_orders_api import order_body
from tests.support.receiver import Receiver

# A Redis database of its own, so that emptying it touches nothing else.
RELIABILITY_REDIS_DB = 13


def redis_url(base: str) -> str:
    if base.startswith("unix://"):
        return base.split("?")[0] + f"?db={RELIABILITY_REDIS_DB}"
    return base.rsplit("/", 1)[0] + f"/{RELIABILITY_REDIS_DB}"


@pytest.fixture
def worker_env(settings) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORDERDESK_")},
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url(settings.redis_url),
        "ORDERDESK_SECRET_KEY": settings.secret_key,
        "ORDERDESK_ENV": "test",
        "ORDERDESK_QUEUE": f"reliability-{secrets.token_hex(4)}",
        "ORDERDESK_WEBHOOKS_ALLOW_PRIVATE": "true",
        "ORDERDESK_WEBHOOK_RETRY_SCHEDULE": "0.2,0.4,0.8,1,1,1,1,1,1,1",
        "ORDERDESK_WEBHOOK_TIMEOUT": "1",
        "ORDERDESK_WEBHOOK_LEASE_SECONDS": "4",
        "ORDERDESK_LOG_LEVEL": "WARNING",
    }


class Workers:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "orderdesk.cli", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("ORDERDESK_TEST_WORKER_LOG", os.devnull), "ab"),
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(worker_env):
    pool = Workers(worker_env)
    yield pool
    pool.stop_all()


async def setup_tenant(db, receiver: Receiver):
    tenant = await make_tenant(db, "Reliable Co")
    actor = Actor(kind=ActorKind.SYSTEM, id=tenant.id, display_name="test", tenant_ids=frozenset({tenant.id}))
    await endpoint_service.create_endpoint(
        db, actor, tenant.id, EndpointCreate(url=receiver.url, ordered=True), allow_private=True
    )
    return tenant, actor


async def create_orders(db, actor, count: int) -> None:
    for _ in range(count):
        await orders.capture_order(db, actor, OrderCreate.model_validate(order_body()), channel=Channel.API)


async def committed_event_ids(owner_connection, tenant) -> set[str]:
    rows = await owner_connection.fetch("SELECT id FROM outbox_events WHERE tenant_id = $1", tenant.id)
    return {str(r["id"]) for r in rows}


async def wait_until(condition, timeout: float, what: str) -> None:  # noqa: ASYNC109 - a polled deadline
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def delivered_ids(receiver: Receiver) -> set[str]:
    return {r.headers["webhook-id"] for r in list(receiver.received) if r.accepted}


def assert_order_per_order(receiver: Receiver) -> None:
    """On an ordered endpoint, each order's events were first accepted in sequence order."""
    accepted: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for request in list(receiver.received):
        payload = request.payload
        if request.accepted and payload["id"] not in seen:
            seen.add(payload["id"])
            accepted[payload["data"]["order"]["id"]].append(payload["data"]["sequence"])
    for order_id, sequences in accepted.items():
        assert sequences == sorted(sequences), f"order {order_id} events accepted out of order: {sequences}"


def assert_duplicates_share_ids(receiver: Receiver) -> None:
    by_id = defaultdict(set)
    for request in receiver.received:
        by_id[request.headers["webhook-id"]].add(request.body)
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a webhook-id carried different bodies"


@pytest.fixture
async def slow_receiver():
    async def slow(request, count):
        await asyncio.sleep(0.05)
        return 200, {}

    receiver = await Receiver(respond=slow).start()
    yield receiver
    await receiver.stop()


async def test_kill_9_mid_delivery_loses_nothing(db, owner_connection, workers, slow_receiver):
    tenant, actor = await setup_tenant(db, slow_receiver)
    await create_orders(db, actor, 30)
    expected = await committed_event_ids(owner_connection, tenant)
    first = workers.start()

    async def some_arrived():
        return len(slow_receiver.received) >= 10

    await wait_until(some_arrived, 60, "first deliveries")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert delivered_ids(slow_receiver) != expected, (
        "everything arrived before the kill; the test proves nothing"
    )
    started = time.monotonic()
    workers.start()

    async def all_delivered():
        return delivered_ids(slow_receiver) == expected

    await wait_until(all_delivered, 60, "every event after the restart")
    assert time.monotonic() - started < 60
    assert_duplicates_share_ids(slow_receiver)
    assert_order_per_order(slow_receiver)


async def test_redis_emptied_with_deliveries_pending(
    db, owner_connection, workers, worker_env, slow_receiver
):
    tenant, actor = await setup_tenant(db, slow_receiver)
    await create_orders(db, actor, 10)
    client = aioredis.from_url(worker_env["REDIS_URL"])
    try:
        await client.flushdb()  # whatever was queued is gone
    finally:
        await client.aclose()
    workers.start()
    expected = await committed_event_ids(owner_connection, tenant)

    async def all_delivered():
        return delivered_ids(slow_receiver) == expected

    await wait_until(all_delivered, 60, "every event after Redis was emptied")


async def test_flaky_receiver_with_two_workers(db, owner_connection, workers):
    rng = random.Random(7)

    async def flaky(request, count):
        roll = rng.random()
        if roll < 0.10:
            return 500, {}
        if roll < 0.13:
            await asyncio.sleep(1.5)  # longer than the 1 s timeout
        return 200, {}

    receiver = await Receiver(respond=flaky).start()
    try:
        tenant, actor = await setup_tenant(db, receiver)
        workers.start()
        workers.start()
        await create_orders(db, actor, 40)
        expected = await committed_event_ids(owner_connection, tenant)

        async def all_delivered():
            return delivered_ids(receiver) >= expected

        await wait_until(all_delivered, 90, "every event through a flaky receiver")
        assert delivered_ids(receiver) == expected  # counting: unique delivered ids == committed events
        assert_duplicates_share_ids(receiver)
        assert_order_per_order(receiver)
        async with db.transaction(Scope(tenant_ids=frozenset({tenant.id}))) as session:
            from sqlalchemy import text

            dead = await session.scalar(text("SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'"))
        assert dead == 0
    finally:
        await receiver.stop()


async def test_a_running_worker_delivers_a_change_as_it_commits(db, owner_connection, workers):
    """The NOTIFY wakes the worker's dispatch loop: no waiting for the 5 s sweep."""
    receiver = await Receiver().start()
    try:
        tenant, actor = await setup_tenant(db, receiver)
        workers.start()
        await create_orders(db, actor, 1)

        async def all_delivered():
            return delivered_ids(receiver) == await committed_event_ids(owner_connection, tenant)

        await wait_until(all_delivered, 60, "the first order's events (the worker is up)")
        for _ in range(3):
            await asyncio.sleep(2.5)  # an idle worker, its loop past lingering
            await create_orders(db, actor, 1)
            await wait_until(all_delivered, 2, "a new order's events, well before the next sweep")
    finally:
        await receiver.stop()
