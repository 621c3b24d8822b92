"""The job queue. arq lives behind this one module so that it could be replaced.

Delivery semantics: a job may run more than once (a worker can die after doing
the work and before recording it), so every job must be idempotent. Correctness
never depends on Redis keeping its data: anything that must happen is first
written to PostgreSQL, and periodic sweeps re-enqueue what a lost job left undone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.worker import func
from redis.asyncio import ConnectionPool

# arq's default is 0.5 s between polls; work such as webhook dispatch should start promptly.
POLL_DELAY_SECONDS = 0.05


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 1
    return settings


# msgpack instead of arq's default pickle: a job payload is data, never code to run.
def serialize(value: Any) -> bytes:
    return msgpack.packb(value, datetime=True, default=str)


def deserialize(raw: bytes) -> Any:
    return msgpack.unpackb(raw, timestamp=3)


def connect(url: str, queue_name: str) -> ArqRedis:
    """A queue client that connects on first use, so a web process starts (and reports
    itself not ready) while Redis is down, instead of failing to start."""
    pool = ConnectionPool.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return ArqRedis(
        connection_pool=pool,
        default_queue_name=queue_name,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )


async def enqueue(pool: ArqRedis, job_name: str, *args: Any, job_id: str | None = None) -> None:
    """Queue `job_name`; with a `job_id`, a job already queued under that id is not queued twice."""
    await pool.enqueue_job(job_name, *args, _job_id=job_id)


JobFunction = Callable[..., Awaitable[Any]]


def job(
    function: JobFunction, *, keep_result_seconds: float | None = None, max_tries: int | None = None
) -> Any:
    """Declare a job with its own result retention or retry count."""
    return func(function, keep_result=keep_result_seconds, max_tries=max_tries)


@dataclass(frozen=True)
class Periodic:
    """A job to run on a schedule (arq cron fields: second/minute sets)."""

    function: JobFunction
    minute: set[int] | None = None
    second: set[int] | None = None
    run_at_startup: bool = False


@dataclass
class JobRegistry:
    """Each feature's jobs and periodic jobs, gathered for the worker."""

    jobs: list[JobFunction] = field(default_factory=list)
    periodic: list[Periodic] = field(default_factory=list)

    def worker_settings(
        self,
        *,
        redis_url: str,
        queue_name: str,
        on_startup: JobFunction,
        on_shutdown: JobFunction,
    ) -> dict[str, Any]:
        return {
            "functions": self.jobs,
            "cron_jobs": [
                cron(p.function, minute=p.minute, second=p.second, run_at_startup=p.run_at_startup)
                for p in self.periodic
            ],
            "redis_settings": redis_settings(redis_url),
            "queue_name": queue_name,
            "poll_delay": POLL_DELAY_SECONDS,
            "job_serializer": serialize,
            "job_deserializer": deserialize,
            "on_startup": on_startup,
            "on_shutdown": on_shutdown,
            # A job that hangs is cut off and retried rather than blocking a slot for 300 s.
            "job_timeout": 60,
            "max_tries": 5,
            "health_check_interval": 30,
            "allow_abort_jobs": True,
        }
