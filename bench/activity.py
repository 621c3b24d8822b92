"""Where a benchmark's database sessions spend their time: samples of pg_stat_activity.

    uv run python bench/activity.py                      # beside a running bench script
    uv run python bench/activity.py --window 10 --every 0.01

Every `--every` seconds it reads what each active session of the benchmark databases
(`--database-prefix`) is running and what it waits for. Every `--window` seconds it
prints, per statement (its first characters) and wait event type ("cpu" when it waits
for nothing), the mean number of sessions found there: 0.9 on a statement with "cpu"
is about one backend busy running it all window long; "Lock" is a wait on a row or
advisory lock, "LWLock" and "IO" mostly the commit's WAL flush. Stop it with Ctrl-C.

A statement that holds a lock long shows twice: as itself, and as the sessions queued
behind it. Sampling costs one small query per interval on one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import time

SAMPLE = """
SELECT query,
       CASE WHEN $2 THEN coalesce(wait_event_type || ':' || wait_event, 'cpu')
            ELSE coalesce(wait_event_type, 'cpu') END AS waiting
FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND datname LIKE $1 || '%'
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=60, help="Seconds per printed summary.")
    parser.add_argument("--every", type=float, default=0.02, help="Seconds between samples.")
    parser.add_argument("--top", type=int, default=12, help="Lines per summary.")
    parser.add_argument("--width", type=int, default=70, help="Characters of each statement shown.")
    parser.add_argument("--database-prefix", default="orderdesk_bench_")
    parser.add_argument(
        "--wait-events",
        action="store_true",
        help="Name the wait event too (LWLock:WALWrite, Lock:transactionid, …), not only its type.",
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a role that may read every session's query); env BENCH_DATABASE_URL.",
    )
    args = parser.parse_args(argv)
    for name in ("window", "every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be a positive number of seconds")
    for name in ("top", "width"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


async def sample(args: argparse.Namespace) -> None:
    import asyncpg

    conn = await asyncpg.connect(args.server_url)
    try:
        while True:
            seen: collections.Counter[tuple[str, str]] = collections.Counter()
            samples, started = 0, time.monotonic()
            while time.monotonic() - started < args.window:
                for row in await conn.fetch(SAMPLE, args.database_prefix, args.wait_events):
                    statement = re.sub(r"\s+", " ", row["query"]).strip()[: args.width]
                    seen[(statement, row["waiting"])] += 1
                samples += 1
                await asyncio.sleep(args.every)
            print(f"=== {time.strftime('%H:%M:%S')}  {samples} samples", flush=True)
            for (statement, waiting), count in seen.most_common(args.top):
                print(f"{count / samples:6.2f}  {waiting:8} {statement}", flush=True)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(sample(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
