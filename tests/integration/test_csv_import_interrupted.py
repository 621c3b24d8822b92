"""An import whose server process dies mid-file: it shows as interrupted, keeps what was
committed, and the same file uploaded again finishes the job without duplicates. A slow
but living upload is never taken for a dead one."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from orderdesk.imports import heartbeat
from orderdesk.imports.jobs import sweep_interrupted_imports_job
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_csv_import import COLUMNS, csv_text, order_rows
from tests.integration.test_orders_api import bearer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def file_of(prefix: str, orders: int) -> tuple[bytes, list[bytes]]:
    """A CSV of one-line orders, and the same bytes cut into one piece per 50 orders."""
    rows = [row for n in range(orders) for row in order_rows(f"{prefix}-{n:05d}", lines=1)]
    text = csv_text(rows, columns=COLUMNS)
    header, *lines = text.split("\r\n")
    pieces = [(header + "\r\n").encode()]
    for start in range(0, orders, 50):
        pieces.append("".join(line + "\r\n" for line in lines[start : start + 50]).encode())
    return text.encode(), pieces


async def count_orders(owner_connection, tenant_id: uuid.UUID, prefix: str) -> int:
    return await owner_connection.fetchval(
        "SELECT count(*) FROM orders WHERE tenant_id = $1 AND external_ref LIKE $2", tenant_id, f"{prefix}-%"
    )


async def wait_until(predicate, every: float = 0.2) -> None:
    async with asyncio.timeout(60):
        while not await predicate():  # noqa: ASYNC110 - another process changes what is polled
            await asyncio.sleep(every)


@pytest.fixture
def server_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "APP_DATABASE_URL"}}
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "ORDERDESK_SECRET_KEY": settings.secret_key,
            "ORDERDESK_QUEUE": settings.queue_name,
            "ORDERDESK_ENV": "test",
            "ORDERDESK_LOG_LEVEL": "WARNING",
        }
    )
    return env


async def test_an_import_whose_server_is_killed_is_interrupted_and_finished_by_uploading_again(
    client, world: World, server_env, owner_connection, monkeypatch
):
    prefix = f"KILL{uuid.uuid4().hex[:6]}"
    whole, pieces = file_of(prefix, 1000)
    headers = bearer(world.key_a)
    created = await client.post("/api/v1/orders/imports", json={"filename": "nightly.csv"}, headers=headers)
    job = created.json()

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderdesk.cli", "serve", "--port", str(port),
        env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    upload: asyncio.Task | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as remote:

            async def server_ready() -> bool:
                try:
                    return (await remote.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(server_ready)
            more = asyncio.Event()  # the client stalls after half the file, as on a slow link

            async def half_then_stall() -> AsyncIterator[bytes]:
                for piece in pieces[: len(pieces) // 2 + 1]:
                    yield piece
                await more.wait()
                yield b""

            upload = asyncio.create_task(
                remote.put(
                    f"/api/v1/orders/imports/{job['id']}/file",
                    content=half_then_stall(),
                    headers={**headers, "Content-Type": "text/csv"},
                )
            )

            async def some_orders_committed() -> bool:
                state = (await client.get(f"/api/v1/orders/imports/{job['id']}", headers=headers)).json()
                return state["status"] == "running" and state["orders_created"] > 0

            await wait_until(some_orders_committed)
            server.send_signal(signal.SIGKILL)  # as the kernel's OOM killer or a hard redeploy does
            await asyncio.wait_for(server.wait(), 30)
            # The client notices once it has something more to send and reads the answer.
            more.set()
            with pytest.raises(httpx.TransportError):
                await asyncio.wait_for(upload, 30)
    finally:
        if server.returncode is None:
            server.kill()
            await asyncio.wait_for(server.wait(), 30)
        if upload is not None and not upload.done():
            upload.cancel()

    committed = await count_orders(owner_connection, world.a.id, prefix)
    assert 0 < committed < 1000
    # Gone, but silent for less than STALE_AFTER: nobody can tell it from a slow import yet.
    state = (await client.get(f"/api/v1/orders/imports/{job['id']}", headers=headers)).json()
    assert state["status"] == "running" and state["failure"] is None

    # The heartbeat stays where the dead process left it; time passes beyond the threshold.
    monkeypatch.setattr(heartbeat, "STALE_AFTER", dt.timedelta(seconds=1))
    await asyncio.sleep(1.5)
    state = (await client.get(f"/api/v1/orders/imports/{job['id']}", headers=headers)).json()
    assert state["status"] == "interrupted" and state["finished_at"]
    assert state["orders_created"] == committed and state["orders_rejected"] == 0
    assert f"after {state['rows_read']} rows" in state["failure"]
    assert "Upload the same file again as a new import" in state["failure"]
    listed = (await client.get("/api/v1/orders/imports", headers=headers)).json()
    assert {i["id"]: i["status"] for i in listed}[job["id"]] == "interrupted"

    await sign_in(client, world.lead_a)
    shown = await client.get(f"/console/imports/{job['id']}/progress", headers={"HX-Request": "true"})
    assert "interrupted" in shown.text and "every 1s" not in shown.text  # no endless polling
    assert "Upload the same file again" in shown.text

    token = session_csrf((await client.get("/console/imports")).text)
    again = await client.post(
        "/api/v1/orders/imports/csv",
        params={"filename": "nightly.csv"},
        content=whole,
        headers={"X-CSRF-Token": token, "Content-Type": "text/csv"},
    )
    assert again.status_code == 201, again.text
    report = again.json()
    assert report["status"] == "done"
    assert (report["orders_created"], report["orders_existing"]) == (1000 - committed, committed)
    assert await count_orders(owner_connection, world.a.id, prefix) == 1000


async def test_a_slow_upload_keeps_beating_and_is_never_taken_for_a_dead_one(
    settings, world: World, monkeypatch
):
    """No row arrives for longer than the threshold; the heartbeat alone keeps it running."""
    from orderdesk.app import create_app

    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(heartbeat, "STALE_AFTER", dt.timedelta(seconds=1))
    prefix = f"SLOW{uuid.uuid4().hex[:6]}"
    _, pieces = file_of(prefix, 100)
    headers = bearer(world.key_a)
    resume = asyncio.Event()

    async def pause_midway() -> AsyncIterator[bytes]:
        yield pieces[0]
        yield pieces[1]
        await resume.wait()
        for piece in pieces[2:]:
            yield piece

    app = create_app(settings)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as http,
    ):
        created = await http.post("/api/v1/orders/imports", json={"filename": "slow.csv"}, headers=headers)
        job = created.json()
        upload = asyncio.create_task(
            http.put(
                f"/api/v1/orders/imports/{job['id']}/file",
                content=pause_midway(),
                headers={**headers, "Content-Type": "text/csv"},
            )
        )
        first = None
        for _ in range(15):  # three seconds without a row: three times the threshold
            await asyncio.sleep(0.2)
            state = (await http.get(f"/api/v1/orders/imports/{job['id']}", headers=headers)).json()
            assert state["status"] == "running", state
            first = first or state["heartbeat_at"]
        assert state["heartbeat_at"] > first  # it beat while no row came
        resume.set()
        response = await upload
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "done" and response.json()["orders_created"] == 100


async def test_the_worker_sweep_marks_imports_nobody_looks_at(client, world: World, owner_connection, db):
    headers = bearer(world.key_b)
    stale, fresh = [
        (await client.post("/api/v1/orders/imports", json={"filename": name}, headers=headers)).json()["id"]
        for name in ("stale.csv", "fresh.csv")
    ]
    # What a process killed five minutes ago leaves behind, next to one beating now.
    await owner_connection.execute(
        "UPDATE order_imports SET status = 'running', started_at = now() - interval '6 minutes', "
        "heartbeat_at = now() - interval '5 minutes', rows_read = 1234 WHERE id = $1",
        uuid.UUID(stale),
    )
    await owner_connection.execute(
        "UPDATE order_imports SET status = 'running', started_at = now(), heartbeat_at = now() WHERE id = $1",
        uuid.UUID(fresh),
    )
    from orderdesk.worker import job_registry

    assert any(
        p.function is sweep_interrupted_imports_job and p.run_at_startup for p in job_registry().periodic
    )
    result = await sweep_interrupted_imports_job({"db": db})
    assert result["interrupted"] >= 1
    rows = {
        str(r["id"]): r
        for r in await owner_connection.fetch(
            "SELECT id, status::text, failure, finished_at FROM order_imports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(stale), uuid.UUID(fresh)],
        )
    }
    assert rows[stale]["status"] == "interrupted" and rows[stale]["finished_at"] is not None
    assert "after 1234 rows" in rows[stale]["failure"]
    assert rows[fresh]["status"] == "running" and rows[fresh]["failure"] is None
    await owner_connection.execute("UPDATE order_imports SET status = 'done' WHERE id = $1", uuid.UUID(fresh))
