"""CPU per order of `POST /api/v1/orders`, in-process, one request at a time.

    uv run python bench/intake_cpu.py                    # 300 orders after 50 warm-up ones
    uv run python bench/intake_cpu.py --orders 500 --profile /tmp/intake.prof

The app is called as an ASGI callable (no HTTP server, no client library), so the
CPU counted is the application's own: authentication, routing, validation, the
service, the SQL it sends through the driver, and the JSON answer. Requests run one
after another, so what a request costs is not blurred by others waiting for the CPU;
this is the number to compare before and after a change to the hot path, on a
shared machine where rates drift. `--profile` writes a cProfile of the measured
requests. The database is made and dropped as in bench/intake.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import intake
import loadgen


def _body(ref: str) -> bytes:
    return json.dumps(loadgen.ORDER_TEMPLATE).replace(loadgen.REF_MARK, ref).encode()


async def _post(app, secret: str, ref: str) -> int:
    """One request through the ASGI app; returns the status."""
    body = _body(ref)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/orders",
        "raw_path": b"/api/v1/orders",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench.local"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"idempotency-key", ref.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(args) -> dict:
    from orderdesk.app import create_app

    bench = await intake.create_bench_db(args.server_url, args.redis_url, args.tenants)
    try:
        app = create_app(intake._settings(bench.owner_url, args.redis_url))
        async with app.lifespan():  # the app's startup and shutdown hooks
            run = secrets.token_hex(3)
            for n in range(args.warmup):
                key = bench.keys[n % len(bench.keys)]
                assert await _post(app, key["secret"], f"warm-{run}-{n}") == 201
            profile = cProfile.Profile() if args.profile else None
            costs = []
            for n in range(args.orders):
                key = bench.keys[n % len(bench.keys)]
                if profile:
                    profile.enable()
                started = time.process_time()
                status = await _post(app, key["secret"], f"cpu-{run}-{n}")
                costs.append((time.process_time() - started) * 1000)
                if profile:
                    profile.disable()
                assert status == 201, status
            if profile:
                profile.dump_stats(args.profile)
    finally:
        await intake.drop_bench_db(args.server_url, bench.name)
    costs.sort()
    return {
        "orders": args.orders,
        "cpu_ms_mean": round(statistics.fmean(costs), 3),
        "cpu_ms_median": round(statistics.median(costs), 3),
        "cpu_ms_p90": round(costs[int(0.9 * len(costs))], 3),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--profile", type=Path, help="Write a cProfile of the measured requests here.")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    os.environ.setdefault("ORDERDESK_LOG_LEVEL", "WARNING")
    try:
        import uvloop

        result = uvloop.run(measure(args))
    except ImportError:
        result = asyncio.run(measure(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
