"""Single-order intake: the HTTP API against the same SQL sent raw, on one fresh database.

    uv run python bench/intake.py                      # workers 1 and 2, 32 clients, 15 s phases
    uv run python bench/intake.py --workers 2 --duration 30 --json /tmp/intake.json

What one run does:

1. Creates its own database on the server (`--server-url`), migrates it, and makes
   `--tenants` tenants with one API key each through the services.
2. Parity check: sends one order through the app in-process while recording the SQL
   it sends, runs one order through the raw baseline (bench/intake_sql.py), and
   stops if the two statement lists differ. It also compares the rows both wrote.
3. Raw baseline: `--concurrency` asyncpg clients, closed loop (the database's rate
   for this work with no Python web or ORM around it).
4. For each `--workers` count: starts `orderdesk serve` on a free port, then, with
   the load generator in its own process (bench/loadgen.py):
   - GET /healthz, closed loop: what the client and the HTTP stack can do at all;
   - POST /api/v1/orders, closed loop: the API's maximum rate;
   - POST /api/v1/orders, open loop at `--load-fraction` of that rate: latency.
5. Raw baseline again (the machine is shared: two samples show the drift).
6. Prints the table (and writes JSON with `--json`), drops the database.

CPU use of the server, PostgreSQL and the client is sampled from /proc during each
measured window, so a report says which process ran out of CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import difflib
import json
import logging
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from benchdb import create_database, drop_database, plain  # noqa: E402 (bench/, the script's own folder)

ROOT = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds measured per phase.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Unmeasured seconds before each phase.")
    parser.add_argument("--concurrency", type=int, default=32, help="Concurrent clients (connections).")
    parser.add_argument("--workers", default="1,2", help="Comma-separated web process counts to try.")
    parser.add_argument("--tenants", type=int, default=4, help="Tenants (one API key each), used in turn.")
    parser.add_argument(
        "--load-fraction", type=float, default=0.6, help="Open-loop rate as a fraction of the API's max."
    )
    parser.add_argument("--client-procs", type=int, default=1, help="Load generator processes.")
    parser.add_argument("--raw-procs", type=int, default=1, help="Raw baseline processes.")
    parser.add_argument("--pool-size", type=int, help="ORDERDESK_DB_POOL_SIZE for the server (app default).")
    parser.add_argument(
        "--log-levels",
        default="WARNING",
        help="ORDERDESK_LOG_LEVEL values to run the API at, e.g. WARNING,INFO (INFO logs every request).",
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a role that may create databases); env BENCH_DATABASE_URL.",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--skip-raw", action="store_true", help="API phases only.")
    parser.add_argument("--no-parity", action="store_true", help="Skip the statement parity check.")
    parser.add_argument("--keep-db", action="store_true", help="Do not drop the database at the end.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    args.levels = [lv.strip().upper() for lv in args.log_levels.split(",") if lv.strip()]
    return args


# ---------------------------------------------------------------- the database


@dataclass
class BenchDb:
    name: str
    owner_url: str  # postgresql://postgres@…/name: migrations, row checks, the server's DATABASE_URL
    app_dsn: str  # the application role, as the server connects: the raw baseline uses it too
    keys: list[dict] = field(default_factory=list)  # secret, hash, id, name, tenant_id


async def create_bench_db(server_url: str, redis_url: str, tenants: int) -> BenchDb:
    """A fresh database, migrated, with tenants and API keys made through the services."""

    from orderdesk.accounts import services as accounts
    from orderdesk.accounts.tokens import digest
    from orderdesk.core.db import Database, make_engine
    from orderdesk.core.migrations import upgrade
    from orderdesk.tenants import services as tenant_services

    name, owner_url = await create_database(server_url)
    bench = BenchDb(name, owner_url, plain(_settings(owner_url, redis_url).app_url))
    await asyncio.to_thread(upgrade, owner_url)
    db = Database(make_engine(_settings(owner_url, redis_url).app_url, pool_size=2))
    try:
        actor = await tenant_services.system_actor(db)
        created = [
            await tenant_services.create_tenant(
                db, actor, slug=f"bench-{i}-{secrets.token_hex(3)}", name=f"Bench {i}"
            )
            for i in range(tenants)
        ]
        actor = await tenant_services.system_actor(db)
        for tenant in created:
            issued = await accounts.issue_api_key(db, actor, tenant.id, "bench")
            bench.keys.append(
                {
                    "secret": issued.secret,
                    "hash": digest(issued.secret),
                    "id": str(issued.key.id),
                    "name": issued.key.name,
                    "tenant_id": str(tenant.id),
                }
            )
    finally:
        await db.dispose()
    return bench


async def drop_bench_db(server_url: str, name: str) -> None:
    await drop_database(server_url, name)


def _server_env(owner_url: str, redis_url: str, log_level: str = "WARNING", pool_size: int | None = None):
    env = {
        "DATABASE_URL": owner_url,
        "REDIS_URL": redis_url,
        "ORDERDESK_SECRET_KEY": "bench-" + secrets.token_hex(24),
        "ORDERDESK_QUEUE": f"orderdesk-bench-{secrets.token_hex(3)}",
        "ORDERDESK_LOG_LEVEL": log_level,
        "ORDERDESK_LOG_JSON": "true",
    }
    if pool_size:
        env["ORDERDESK_DB_POOL_SIZE"] = str(pool_size)
    return env


def _settings(owner_url: str, redis_url: str, **kwargs):
    from orderdesk.settings import load_settings

    return load_settings(_server_env(owner_url, redis_url, **kwargs))


# ---------------------------------------------------------------- parity


def _order_json(ref: str) -> dict:
    import loadgen

    return json.loads(json.dumps(loadgen.ORDER_TEMPLATE).replace(loadgen.REF_MARK, ref))


async def parity_check(bench: BenchDb, redis_url: str) -> list[str]:
    """Problems found comparing the API's statements and rows with the raw baseline's."""
    import asyncpg
    import intake_sql
    from litestar.testing import AsyncTestClient
    from sqlalchemy import event

    from orderdesk.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)
    key = bench.keys[0]
    api_ref, raw_ref = f"parity-api-{secrets.token_hex(3)}", f"parity-raw-{secrets.token_hex(3)}"
    sent: list[str] = []
    app = create_app(_settings(bench.owner_url, redis_url))
    async with AsyncTestClient(app=app, base_url="http://bench.local") as client:
        engine = app.state.db.engine.sync_engine

        def on_execute(conn, cursor, statement, parameters, context, executemany):
            sent.append(intake_sql._normalise(statement))

        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "begin", lambda conn: sent.append("BEGIN"))
        event.listen(engine, "commit", lambda conn: sent.append("COMMIT"))
        # Once to fill caches (and touch the key's last-used time), once to record.
        for ref in (f"{api_ref}-warm", api_ref):
            sent.clear()
            response = await client.post(
                "/api/v1/orders",
                json=_order_json(ref),
                headers={"Authorization": f"Bearer {key['secret']}", "Idempotency-Key": ref},
            )
            if response.status_code != 201:
                return [f"the API answered {response.status_code}: {response.text[:300]}"]
    raw = await intake_sql.trace_one(bench.app_dsn, key, raw_ref)
    problems = []
    if list(raw) != sent:
        diff = "\n".join(difflib.unified_diff(sent, list(raw), "api", "raw", lineterm="", n=1))
        problems.append(f"statements differ (api vs raw):\n{diff}")
    conn = await asyncpg.connect(bench.owner_url)
    try:
        api_rows, raw_rows = await _rows_of(conn, api_ref), await _rows_of(conn, raw_ref)
    finally:
        await conn.close()
    for table in api_rows:
        if api_rows[table] != raw_rows[table]:
            problems.append(f"{table} rows differ:\n  api {api_rows[table]}\n  raw {raw_rows[table]}")
    return problems


def _outbox_shape(row) -> tuple:
    payload = json.loads(row["payload"])
    data = payload["data"]
    shape = (sorted(payload), sorted(data), sorted(data["order"]), data["order"]["status"])
    return (row["event_type"], row["order_seq"], *shape, data["change"]["changes"])


async def _rows_of(conn, ref: str) -> dict[str, object]:
    """What an order wrote, minus what differs by nature (ids, numbers, times, references)."""
    order = await conn.fetchrow("SELECT * FROM orders WHERE external_ref = $1", ref)
    varying = {
        "id",
        "number",
        "external_ref",
        "customer_email",
        "search_text",
        "created_at",
        "updated_at",
        "status_changed_at",
    }
    key = (order["tenant_id"], order["id"])
    lines = await conn.fetch(
        "SELECT line_no, sku, description, quantity, unit_price_minor, tax_minor, total_minor"
        " FROM order_lines WHERE tenant_id = $1 AND order_id = $2 ORDER BY line_no",
        *key,
    )
    checks = await conn.fetch(
        'SELECT "check", result, detail, resolution FROM verification_checks'
        ' WHERE tenant_id = $1 AND order_id = $2 ORDER BY "check"',
        *key,
    )
    events = await conn.fetch(
        "SELECT seq, kind, actor_kind, actor_id, actor_name, channel, changes FROM order_events"
        " WHERE tenant_id = $1 AND order_id = $2 ORDER BY seq",
        *key,
    )
    stored = await conn.fetchrow(
        "SELECT response_status, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        order["tenant_id"],
        ref,
    )
    body = json.loads(stored["response_body"])
    outbox = await conn.fetch(
        "SELECT event_type, order_seq, payload FROM outbox_events"
        " WHERE tenant_id = $1 AND order_id = $2 ORDER BY order_seq",
        *key,
    )
    items = await conn.fetch(
        "SELECT kind, status, title, cause, priority, value_minor, currency, client_tier, sla_target_seconds,"
        " sla_consumed_seconds, created_by FROM work_items WHERE tenant_id = $1 AND order_id = $2"
        " ORDER BY cause",
        *key,
    )
    return {
        "outbox_events": [_outbox_shape(r) for r in outbox],
        "work_items": [(*r[:2], re.sub(r"#\d+", "#N", r["title"]), *r[3:]) for r in items],
        "orders": {k: v for k, v in dict(order).items() if k not in varying},
        "order_lines": [tuple(r) for r in lines],
        "verification_checks": [tuple(r) for r in checks],
        "order_events": [(*r[:-1], json.loads(r[-1])) for r in events],
        "idempotency_keys": (
            stored["response_status"],
            sorted(body),
            [(c["check"], c["result"], c["detail"]) for c in body["checks"]],
            body["lines"],
            body["status"],
            body["allowed_actions"],
        ),
    }


# ---------------------------------------------------------------- processes and CPU


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks used) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuSample:
    """CPU ticks of the machine, a process tree (the server) and PostgreSQL, at one instant.

    PostgreSQL is split in two: the backends serving the bench database, and every
    other postgres process (the WAL writer, checkpointer… and other people's databases
    on a shared server), so that a neighbour's load is not charged to the benchmark.
    """

    DATABASE = ""  # the bench database's name, set once it exists

    def __init__(self, root_pid: int | None) -> None:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        self.wall = time.monotonic()
        self.total = sum(fields[:8])
        self.idle = fields[3] + fields[4]
        stats = {pid: s for pid in _all_pids() if (s := _proc_stat(pid))}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = set(), [root_pid] if root_pid else []
        while todo:
            pid = todo.pop()
            if pid in stats and pid not in tree:
                tree.add(pid)
                todo.extend(children.get(pid, []))
        self.server = {pid: stats[pid][1] for pid in tree}
        self.postgres, self.postgres_other = {}, {}
        for pid, (_, ticks) in stats.items():
            command = _cmdline(pid)
            if command.startswith("postgres"):
                ours = f" {self.DATABASE} " in command if self.DATABASE else True
                (self.postgres if ours else self.postgres_other)[pid] = ticks


def cpu_use(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Percent of one core (server, postgres backends of the bench database, other postgres
    processes) and of the whole machine (machine) between samples."""
    seconds = after.wall - before.wall

    def tree(a: dict, b: dict) -> float:
        return sum(ticks - a.get(pid, 0) for pid, ticks in b.items()) / CLK_TCK / seconds * 100

    total = after.total - before.total
    return {
        "server_pct": round(tree(before.server, after.server), 1),
        "postgres_pct": round(tree(before.postgres, after.postgres), 1),
        "postgres_other_pct": round(tree(before.postgres_other, after.postgres_other), 1),
        "machine_pct": round(100 * (1 - (after.idle - before.idle) / total), 1) if total else 0.0,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`orderdesk serve` in its own session, so that stopping it stops its workers too."""

    def __init__(self, workers: int, env: dict, log_path: Path) -> None:
        self.port = free_port()
        script = Path(sys.executable).with_name("orderdesk")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "orderdesk.cli"]
        command += ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        self.log = open(log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            command,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        self.workers = workers

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        time.sleep(1.0 if self.workers > 1 else 0.2)  # let every worker finish starting
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


@dataclass
class Phase:
    name: str
    rate: float  # successful requests per second inside the window
    latencies_ms: list[float]
    statuses: dict[str, int]
    errors: int
    late: int
    client_cpu_pct: float
    cpu: dict[str, float]
    failures: list[str]
    target_rate: float | None = None

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def cpu_ms_per_request(self, process: str) -> float:
        """CPU milliseconds one successful request cost `process` (server, postgres, client)."""
        if not self.rate:
            return float("nan")
        pct = self.client_cpu_pct if process == "client" else self.cpu[f"{process}_pct"]
        return pct / 100 / self.rate * 1000

    def summary(self) -> dict:
        return {
            "name": self.name,
            "rate_per_s": round(self.rate, 1),
            "target_rate_per_s": round(self.target_rate, 1) if self.target_rate else None,
            "p50_ms": round(self.pct(50), 2),
            "p90_ms": round(self.pct(90), 2),
            "p99_ms": round(self.pct(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "statuses": self.statuses,
            "errors": self.errors,
            "late_dispatches": self.late,
            "client_cpu_pct": round(self.client_cpu_pct, 1),
            **self.cpu,
            "cpu_ms_per_request": {
                p: round(self.cpu_ms_per_request(p), 2) for p in ("server", "postgres", "client")
            },
            "failures": self.failures,
        }


def run_phase(
    name: str, script: str, specs: list[dict], server: Server | None, tmp: Path, target_rate=None
) -> Phase:
    """Run child processes with a common start time; sample CPU over the measured window."""
    start_at = time.time() + 1.5
    for spec in specs:
        spec["start_at"] = start_at
    children = []
    for i, spec in enumerate(specs):
        spec_path, out_path = tmp / f"{name}-{i}.spec.json", tmp / f"{name}-{i}.out.json"
        spec_path.write_text(json.dumps(spec))
        out_path.unlink(missing_ok=True)
        command = [sys.executable, str(BENCH_DIR / script), str(spec_path), str(out_path)]
        process = subprocess.Popen(command)  # noqa: S603 (our own command line)
        children.append((process, out_path))
    root = server.process.pid if server else None
    time.sleep(max(0.0, start_at + specs[0]["warmup"] - time.time()))
    before = CpuSample(root)
    time.sleep(max(0.0, start_at + specs[0]["warmup"] + specs[0]["duration"] - time.time()))
    after = CpuSample(root)
    results = []
    for process, out_path in children:
        if process.wait(timeout=120) != 0:
            raise RuntimeError(f"{script} failed in phase {name} (exit {process.returncode})")
        results.append(json.loads(out_path.read_text()))
    window = specs[0]["duration"]
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    ok = sum(c for s, c in statuses.items() if s.startswith("2"))
    return Phase(
        name=name,
        rate=ok / window,
        latencies_ms=[x for r in results for x in r["latencies_ms"]],
        statuses=statuses,
        errors=sum(r["errors"] for r in results),
        late=sum(r["late"] for r in results),
        client_cpu_pct=sum(r["cpu_s"] for r in results) / window * 100,
        cpu=cpu_use(before, after),
        failures=[r["sample_failure"] for r in results if r["sample_failure"]],
        target_rate=target_rate,
    )


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def load_specs(args, kind: str, mode: str, port: int, prefix: str, duration: float, rate=None) -> list[dict]:
    procs = max(1, min(args.client_procs, args.concurrency))
    return [
        {
            "kind": kind,
            "mode": mode,
            "host": "127.0.0.1",
            "port": port,
            "api_keys": [k["secret"] for k in args.bench.keys],
            "ref_prefix": f"{prefix}-{i}",
            "connections": conns,
            "warmup": args.warmup,
            "duration": duration,
            "rate": rate / procs if rate else None,
        }
        for i, conns in enumerate(_split(args.concurrency, procs))
    ]


def raw_phase(args, tmp: Path, name: str) -> Phase:
    procs = max(1, min(args.raw_procs, args.concurrency))
    specs = [
        {
            "dsn": args.bench.app_dsn,
            "keys": args.bench.keys,
            "ref_prefix": f"{args.run_id}-{name}-{i}",
            "connections": conns,
            "concurrency": conns,
            "warmup": args.warmup,
            "duration": args.duration,
        }
        for i, conns in enumerate(_split(args.concurrency, procs))
    ]
    return run_phase(name, "intake_sql.py", specs, None, tmp)


def api_phases(args, tmp: Path, workers: int, level: str) -> dict[str, Phase]:
    env = _server_env(args.bench.owner_url, args.redis_url, level, args.pool_size)
    tag = f"w{workers}-{level.lower()}"
    server = Server(workers, env, tmp / f"server-{tag}.log")
    phases: dict[str, Phase] = {}
    try:
        server.wait_ready()
        prefix = f"{args.run_id}-{tag}"
        if level == args.levels[0]:
            phases["healthz"] = run_phase(
                f"healthz-{tag}", "loadgen.py",
                load_specs(args, "healthz", "closed", server.port, prefix + "-h", min(args.duration, 5.0)),
                server, tmp,
            )  # fmt: skip
            _progress(phases["healthz"], workers, level)
        phases["max"] = run_phase(
            f"max-{tag}", "loadgen.py",
            load_specs(args, "intake", "closed", server.port, prefix + "-m", args.duration),
            server, tmp,
        )  # fmt: skip
        _progress(phases["max"], workers, level)
        if level == args.levels[0] and phases["max"].rate > 0:
            rate = phases["max"].rate * args.load_fraction
            phases["open"] = run_phase(
                f"open-{tag}", "loadgen.py",
                load_specs(args, "intake", "open", server.port, prefix + "-o", args.duration, rate),
                server, tmp, target_rate=rate,
            )  # fmt: skip
            _progress(phases["open"], workers, level)
    finally:
        server.stop()
    return phases


def _progress(phase: Phase, workers: int | None = None, level: str | None = None) -> None:
    where = f"workers={workers} log={level} " if workers else ""
    s = phase.summary()
    per = s["cpu_ms_per_request"]
    print(
        f"  {phase.name:<22} {where}{s['rate_per_s']:>8.1f}/s"
        f"  p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms"
        f"  cpu %: server {s['server_pct']} postgres {s['postgres_pct']} client {s['client_cpu_pct']}"
        f" (other postgres {s['postgres_other_pct']}, machine {s['machine_pct']})"
        f"  cpu ms/request: server {per['server']} postgres {per['postgres']}"
        f" client {per['client']}",
        flush=True,
    )
    for failure in phase.failures:
        print(f"    non-2xx answers, e.g. {failure}", flush=True)
    if phase.errors:
        print(f"    {phase.errors} connection errors", flush=True)


# ---------------------------------------------------------------- report


SETTINGS_REPORTED = (
    "duration", "warmup", "concurrency", "tenants", "load_fraction", "client_procs", "raw_procs", "pool_size",
)  # fmt: skip


def report(args, raw: list[Phase], runs: dict) -> dict:
    """The summary table. Besides the measured ratio (API rate / raw rate in the same run)
    it gives the CPU-cost ratio: what one order costs the raw side (client + database)
    over what it costs the API (web process + database). On a shared machine the rates
    depend on how much CPU the neighbours leave; CPU per order depends on it much less."""
    raw_rate = statistics.mean(p.rate for p in raw) if raw else float("nan")
    raw_cost = (
        statistics.mean(r.cpu_ms_per_request("client") + r.cpu_ms_per_request("postgres") for r in raw)
        if raw
        else float("nan")
    )
    rows = []
    for (workers, level), phases in runs.items():
        ratio = phases["max"].rate / raw_rate if raw else float("nan")
        api_cost = phases["max"].cpu_ms_per_request("server") + phases["max"].cpu_ms_per_request("postgres")
        rows.append(
            {
                "workers": workers,
                "log_level": level,
                "api_per_s": round(phases["max"].rate, 1),
                "raw_per_s": round(raw_rate, 1),
                "ratio": round(ratio, 3),
                "cpu_cost_ratio": round(raw_cost / api_cost, 3),
                "healthz_per_s": round(phases["healthz"].rate, 1) if "healthz" in phases else None,
                "open_rate_per_s": round(phases["open"].target_rate, 1) if "open" in phases else None,
                "open_p50_ms": round(phases["open"].pct(50), 1) if "open" in phases else None,
                "open_p99_ms": round(phases["open"].pct(99), 1) if "open" in phases else None,
                "server_cpu_ms_per_order": round(phases["max"].cpu_ms_per_request("server"), 2),
                "postgres_cpu_ms_per_order": round(phases["max"].cpu_ms_per_request("postgres"), 2),
            }
        )
    print()
    print(
        f"raw baseline: {', '.join(f'{p.rate:.1f}' for p in raw)} orders/s (mean {raw_rate:.1f});"
        f" {args.concurrency} clients, {args.tenants} tenants"
    )
    if raw:
        per = {p: statistics.mean(r.cpu_ms_per_request(p) for r in raw) for p in ("client", "postgres")}
        print(f"raw CPU per order: baseline client {per['client']:.2f} ms, postgres {per['postgres']:.2f} ms")
    header = (
        f"{'workers':>7} {'log':>7} {'API/s':>8} {'raw/s':>8} {'ratio':>6} {'healthz/s':>9}"
        f" {'open @/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv ms/o':>8} {'pg ms/o':>7} {'cpu ratio':>9}"
    )
    print(header)
    for r in rows:
        opened = (
            f"{r['open_rate_per_s']:>8.1f} {r['open_p50_ms']:>7.1f} {r['open_p99_ms']:>7.1f}"
            if r["open_rate_per_s"]
            else f"{'':>8} {'':>7} {'':>7}"
        )
        healthz = f"{r['healthz_per_s']:>9.0f}" if r["healthz_per_s"] else f"{'':>9}"
        print(
            f"{r['workers']:>7} {r['log_level']:>7} {r['api_per_s']:>8.1f} {r['raw_per_s']:>8.1f}"
            f" {r['ratio']:>6.0%} {healthz} {opened}"
            f" {r['server_cpu_ms_per_order']:>8.2f} {r['postgres_cpu_ms_per_order']:>7.2f}"
            f" {r['cpu_cost_ratio']:>9.0%}"
        )
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {k: getattr(args, k) for k in SETTINGS_REPORTED},
        "rows": rows,
        "raw": [p.summary() for p in raw],
        "phases": {f"w{w}-{lv}": {k: p.summary() for k, p in ph.items()} for (w, lv), ph in runs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH_DIR))
    args.run_id = secrets.token_hex(3)
    print(f"creating and migrating a bench database on {args.server_url.rsplit('@', 1)[-1]}", flush=True)
    args.bench = asyncio.run(create_bench_db(args.server_url, args.redis_url, args.tenants))
    CpuSample.DATABASE = args.bench.name
    print(f"  {args.bench.name}: {args.tenants} tenants, one API key each", flush=True)
    try:
        if not args.no_parity:
            problems = asyncio.run(parity_check(args.bench, args.redis_url))
            if problems:
                print("parity check failed: the raw baseline no longer matches the API", file=sys.stderr)
                for problem in problems:
                    print(problem, file=sys.stderr)
                return 1
            print("  parity: the raw baseline sends the API's statements, writes the same rows", flush=True)
        with tempfile.TemporaryDirectory(prefix="orderdesk-bench-") as tmp_dir:
            tmp = Path(tmp_dir)
            raw: list[Phase] = []
            if not args.skip_raw:
                raw.append(raw_phase(args, tmp, "raw-before"))
                _progress(raw[-1])
            runs = {}
            for workers in args.worker_counts:
                for level in args.levels:
                    runs[(workers, level)] = api_phases(args, tmp, workers, level)
            if not args.skip_raw:
                raw.append(raw_phase(args, tmp, "raw-after"))
                _progress(raw[-1])
            results = report(args, raw, runs)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            print(f"results written to {args.json}")
    finally:
        if not args.keep_db:
            asyncio.run(drop_bench_db(args.server_url, args.bench.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
