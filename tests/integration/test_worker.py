"""The worker: jobs travel through real Redis, serialised as msgpack, and run."""

from __future__ import annotations

import datetime as dt
import uuid

from arq.worker import Worker
from sqlalchemy import func, select

from orderdesk.accounts.jobs import purge_expired_sign_in_state
from orderdesk.accounts.models import SignInFailure
from orderdesk.core import queue
from orderdesk.core.tenancy import Scope
from orderdesk.worker import worker_settings


async def test_purge_removes_only_old_failures(db):
    now = dt.datetime.now(dt.UTC)
    subject = "account:purge-test@example.com"
    async with db.transaction(Scope()) as session:
        session.add_all(
            [
                SignInFailure(subject=subject, failed_at=now - dt.timedelta(hours=3)),
                SignInFailure(subject=subject, failed_at=now - dt.timedelta(minutes=5)),
            ]
        )
    await purge_expired_sign_in_state(db, now)
    async with db.transaction(Scope()) as session:
        left = await session.scalar(select(func.count()).where(SignInFailure.subject == subject))
    assert left == 1


async def test_enqueued_job_runs_in_a_worker(settings, db, monkeypatch):
    from orderdesk.integrations import jobs as webhook_jobs

    async def not_listening(ctx, url):
        return None

    # Webhook dispatch would also deliver other tests' leftovers in this shared database.
    monkeypatch.setattr(webhook_jobs, "_listen", not_listening)
    subject = f"account:worker-test-{uuid.uuid4().hex}@example.com"
    async with db.transaction(Scope()) as session:
        session.add(SignInFailure(subject=subject, failed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)))
    # A queue of its own: the worker's start-up also queues webhook dispatches on its queue.
    queue_name = f"worker-test-{uuid.uuid4().hex}"
    pool = queue.connect(settings.redis_url, queue_name)
    # arq keeps results by job id for an hour, across queues: a fresh id per run.
    job_id = f"purge-test-{uuid.uuid4().hex}"
    try:
        await queue.enqueue(pool, "purge_sign_in_state_job", job_id=job_id)
        # Enqueuing again under the same id while queued is a no-op, not a second run.
        await queue.enqueue(pool, "purge_sign_in_state_job", job_id=job_id)
        options = worker_settings(settings.model_copy(update={"queue_name": queue_name}))
        options["cron_jobs"] = []
        worker = Worker(**options, burst=True, handle_signals=False)
        await worker.main()
        assert worker.jobs_failed == 0
        assert worker.jobs_complete >= 1
        await worker.close()
    finally:
        await pool.aclose()
    async with db.transaction(Scope()) as session:
        left = await session.scalar(select(func.count()).where(SignInFailure.subject == subject))
    assert left == 0  # the job really ran


def test_worker_avoids_arq_defaults_that_hurt():
    from orderdesk.settings import load_settings

    options = worker_settings(
        load_settings(
            {
                "DATABASE_URL": "postgresql://localhost/x",
                "ORDERDESK_SECRET_KEY": "k" * 40,
            }
        )
    )
    assert options["poll_delay"] <= 0.05
    assert options["job_serializer"] is queue.serialize
    assert queue.deserialize(queue.serialize({"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})) is not None
