"""The worker side: the reply's commit wakes the worker, and the send job delivers through arq."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from arq.worker import Worker
from sqlalchemy import select

from orderdesk.comms import jobs as comms_jobs
from orderdesk.comms import outbound
from orderdesk.comms.models import Message
from orderdesk.core import queue
from orderdesk.core.errors import ValidationFailed
from orderdesk.worker import worker_settings
from tests.integration.test_comms_outbound import DOMAIN, make_desk
from tests.support.smtp_receiver import SmtpReceiver


async def test_a_reply_notifies_the_worker_on_commit_and_a_refused_one_does_not(db, settings):
    desk = await make_desk(db)
    dsn = settings.app_url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    heard: list[str] = []
    await connection.add_listener(outbound.NOTIFY_CHANNEL, lambda *args: heard.append(args[2]))
    try:
        with pytest.raises(ValidationFailed):
            await outbound.send_reply(
                db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text=" "), inbound_domain=DOMAIN
            )
        await asyncio.sleep(0.3)
        assert heard == []  # rolled back: nothing to send, nobody woken
        await outbound.send_reply(
            db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Hello"), inbound_domain=DOMAIN
        )
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert heard == [outbound.NOTIFY_CHANNEL]
    finally:
        await connection.close()


async def test_the_send_job_runs_in_a_worker_and_delivers(db, settings, monkeypatch):
    from orderdesk.integrations import jobs as webhook_jobs

    async def not_listening(ctx, url):
        return None

    # Webhook dispatch would also deliver other tests' leftovers in this shared database.
    monkeypatch.setattr(webhook_jobs, "_listen", not_listening)
    desk = await make_desk(db)
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(text="From the worker"),
        inbound_domain=DOMAIN,
    )
    queue_name = f"comms-worker-test-{uuid.uuid4().hex}"
    pool = queue.connect(settings.redis_url, queue_name)
    with SmtpReceiver() as smtp:
        try:
            await queue.enqueue(pool, comms_jobs.SEND_JOB, job_id=f"send-test-{uuid.uuid4().hex}")
            options = worker_settings(
                settings.model_copy(
                    update={
                        "queue_name": queue_name,
                        "outbound_smtp_host": "127.0.0.1",
                        "outbound_smtp_port": smtp.port,
                        "outbound_smtp_tls": "none",
                        "inbound_email_domains": (DOMAIN,),
                    }
                )
            )
            options["cron_jobs"] = []
            worker = Worker(**options, burst=True, handle_signals=False)
            await worker.main()
            assert worker.jobs_failed == 0 and worker.jobs_complete >= 1
            await worker.close()
        finally:
            await pool.aclose()
    ours = [m for m in smtp.handler.received if m.message["Message-ID"] == result.message.provider_message_id]
    assert len(ours) == 1
    async with db.transaction(desk.scope) as session:
        status = await session.scalar(select(Message.delivery_status).where(Message.id == result.message.id))
    assert status.value == "sent"
