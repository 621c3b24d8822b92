"""Inbound email: parse-and-apply per message, against stdlib parsing plus a bare INSERT.

    uv run python bench/inbound_email.py                    # 400 messages, one at a time
    uv run python bench/inbound_email.py --messages 1000 --concurrency 4 --json /tmp/inbound.json

What one run does, on a fresh database of its own (`--server-url`):

1. Builds a realistic mix of raw messages (`--messages`, fixed seed):
   55 % short plain-text replies with a quoted original (1-3 KB), 25 % Gmail/Outlook-style
   multipart/alternative with HTML (10-40 KB), 15 % with a PDF or image attachment
   (100-400 KB), 5 % large with several photos (1.5-3 MB). Threading varies too: half
   name an order of the tenant from its customer's address, a quarter answer one of our
   own Message-IDs (In-Reply-To), a quarter match nothing (new conversation / triage).
2. Raw baseline (before): for each message, the standard library parses it
   (`policy.default`, the text and HTML bodies read), then asyncpg, as the application
   role, sets the tenant scope and INSERTs one `messages` row with the raw bytes, the
   text and the HTML, one transaction per message. No threading, no sanitising, no
   attachments, no timeline, no work item: the floor for "parse and store".
3. OrderDesk: `comms.inbound.receive_email` for the same messages: recipient lookup,
   parsing, HTML sanitising, quote stripping, intent rules, threading (token, headers,
   order number with the sender check), conversation, message and attachment rows, the
   order's timeline entry and the customer-message work item, one transaction each.
4. Raw baseline again (after): the machine is shared, two samples show drift.

Latency is measured per message (wall clock around one message); throughput is
messages over the phase's wall time. CPU per message: the script's own process, and the
database backends serving the phase's pool (from /proc, read at the end of the phase;
each phase opens its pool anew, so their whole CPU is the phase's). The CPU-cost ratio
(raw CPU per message over OrderDesk's) is the steadier guide on a shared machine.
Prints the table (and `--json`), drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from benchdb import bench_settings, create_database, drop_database, plain  # noqa: E402 (bench/, the script's own folder)
from server_cpu import backend_pids, cpu_seconds  # noqa: E402

DOMAIN = "inbound.bench"
LOREM = (
    "Thanks for the quick answer. I ordered the tent for a trip next weekend and would like to know "
    "whether it will arrive in time, otherwise I need to find another one. "
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="Messages per phase.")
    parser.add_argument("--concurrency", type=int, default=1, help="Messages in flight at once.")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (a role that may create databases); env BENCH_DATABASE_URL.",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--keep", action="store_true", help="Keep the database (its name is printed).")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the message mix


@dataclass
class Target:
    address: str
    orders: list[tuple[int, str]]  # (number, customer email)
    our_ids: list[tuple[str, str]]  # (our Message-ID, customer email)


def _reply_text(rng: random.Random, about: str) -> str:
    new = LOREM * rng.randint(1, 4)
    quoted = "\n".join("> " + line for line in (LOREM * rng.randint(2, 8)).split(". "))
    header = "On Mon, 23 Nov 2026 at 17:02, Shop <s@shop.example> wrote:"
    return f"Hello,\n\n{about} {new}\n\nBest,\nKim\n\n{header}\n{quoted}\n"


def _html(text: str, rng: random.Random) -> str:
    paragraphs = "".join(f"<p style='margin:0'>{line}</p>" for line in text.split("\n") if line)
    filler = "<div class='gmail_quote'><blockquote>" + ("<p>" + LOREM + "</p>") * rng.randint(20, 80)
    return f"<html><body><div dir='ltr'>{paragraphs}</div>{filler}</blockquote></div></body></html>"


def build_message(rng: random.Random, kind: str, target: Target, n: int) -> bytes:
    message = EmailMessage()
    thread = rng.random()
    headers = {}
    if thread < 0.5:
        number, customer = rng.choice(target.orders)
        subject, sender = f"Where is my order #{number}?", customer
        about = f"My order {number} has not arrived yet."
    elif thread < 0.75:
        our_id, customer = rng.choice(target.our_ids)
        subject, sender = "Re: Your order has shipped", customer
        headers["In-Reply-To"] = our_id
        headers["References"] = our_id
        about = "Please cancel it if it has not left yet."
    else:
        subject, sender = "Question", f"someone{n}@example.net"
        about = "Do you ship to Norway?"
    message["From"] = f"Customer {n} <{sender}>"
    message["To"] = target.address
    message["Subject"] = subject
    message["Message-ID"] = f"<bench-{n}-{uuid.uuid4().hex}@mail.example.com>"
    message["Date"] = "Tue, 24 Nov 2026 09:14:03 +0100"
    for name, value in headers.items():
        message[name] = value
    text = _reply_text(rng, about)
    message.set_content(text)
    if kind != "plain":
        message.add_alternative(_html(text, rng), subtype="html")
    if kind == "attachment":
        size = rng.randint(100_000, 400_000)
        message.add_attachment(
            rng.randbytes(size), maintype="application", subtype="pdf", filename=f"invoice-{n}.pdf"
        )
    elif kind == "large":
        for photo in range(rng.randint(2, 4)):
            message.add_attachment(
                rng.randbytes(rng.randint(500_000, 800_000)),
                maintype="image",
                subtype="jpeg",
                filename=f"photo-{photo}.jpg",
            )
    return message.as_bytes()


def build_mix(args, target: Target) -> list[tuple[str, bytes]]:
    rng = random.Random(args.seed)
    kinds = ["plain"] * 55 + ["html"] * 25 + ["attachment"] * 15 + ["large"] * 5
    return [
        (kind, build_message(rng, kind, target, n))
        for n, kind in enumerate(rng.choices(kinds, k=args.messages))
    ]


def fresh_ids(mix: list[tuple[str, bytes]], tag: str) -> list[tuple[str, bytes]]:
    """The same messages under new Message-IDs, so each phase stores all of them."""
    return [(kind, raw.replace(b"<bench-", f"<{tag}-bench-".encode(), 1)) for kind, raw in mix]


# ---------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    client_cpu: float = 0.0
    db_cpu: float = 0.0

    def summary(self) -> dict:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        return {
            "name": self.name,
            "messages": len(ordered),
            "seconds": round(self.seconds, 2),
            "messages_per_s": round(len(ordered) / self.seconds, 1),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered), 1),
            "client_cpu_ms_per_msg": round(self.client_cpu * 1000 / len(ordered), 2),
            "db_cpu_ms_per_msg": round(self.db_cpu * 1000 / len(ordered), 2),
            "p95_by_kind_ms": {
                kind: round(sorted(v)[min(len(v) - 1, int(0.95 * len(v)))], 1)
                for kind, v in self.by_kind.items()
            },
        }


async def _run_phase(name: str, mix, concurrency: int, handle, owner_dsn: str) -> Phase:
    phase = Phase(name)
    queue: asyncio.Queue = asyncio.Queue()
    for item in mix:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            kind, raw = queue.get_nowait()
            started = time.perf_counter()
            await handle(raw)
            elapsed = (time.perf_counter() - started) * 1000
            phase.latencies_ms.append(elapsed)
            phase.by_kind.setdefault(kind, []).append(elapsed)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = time.process_time() - cpu_started
    phase.db_cpu = cpu_seconds(await backend_pids(owner_dsn))
    return phase


async def raw_phase(
    name: str, app_dsn: str, tenant_id: uuid.UUID, conversation_id: uuid.UUID, mix, concurrency, owner_dsn
):
    import asyncpg

    pool = await asyncpg.create_pool(app_dsn, min_size=concurrency, max_size=concurrency)
    parser = BytesParser(policy=policy.default)

    async def handle(raw: bytes) -> None:
        message = parser.parsebytes(raw)
        plain = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        text = plain.get_content() if plain is not None else None
        html_text = html.get_content() if html is not None else None
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT set_config('orderdesk.tenant_ids', $1, true)", "{" + str(tenant_id) + "}"
            )
            await connection.execute(
                """INSERT INTO messages (tenant_id, id, conversation_id, direction, channel, sender_address,
                       subject, text_body, html_body, provider_message_id, placement, raw_mime, raw_size,
                       created_by)
                   VALUES ($1, $2, $3, 'in', 'email', $4, $5, $6, $7, $8, 'new', $9, $10, 'bench')""",
                tenant_id,
                uuid.uuid4(),
                conversation_id,
                str(message.get("From", ""))[:254],
                str(message.get("Subject", ""))[:998],
                text,
                html_text,
                str(message.get("Message-ID")),
                raw,
                len(raw),
            )

    try:
        return await _run_phase(name, mix, concurrency, handle, owner_dsn)
    finally:
        await pool.close()


async def app_phase(settings, target: Target, mix, concurrency: int, owner_dsn: str) -> Phase:
    from orderdesk.comms import inbound
    from orderdesk.core.db import Database, make_engine

    db = Database(make_engine(settings.app_url, pool_size=max(2, concurrency)))

    async def handle(raw: bytes) -> None:
        result = await inbound.receive_email(db, raw, recipient=target.address, domains=(DOMAIN,), via="http")
        assert not result.duplicate

    try:
        return await _run_phase("OrderDesk receive_email", mix, concurrency, handle, owner_dsn)
    finally:
        await db.dispose()


# ---------------------------------------------------------------- setup


async def setup(settings) -> dict:
    from orderdesk.comms import services as comms
    from orderdesk.comms.models import Direction, MessageChannel
    from orderdesk.core.db import Database, make_engine
    from orderdesk.orders import services as order_services
    from orderdesk.orders.models import Channel, Order
    from orderdesk.orders.schemas import OrderCreate
    from orderdesk.tenants import services as tenant_services
    from orderdesk.wiring import connect_features

    connect_features()
    db = Database(make_engine(settings.app_url, pool_size=4))
    try:
        system = await tenant_services.system_actor(db)
        made = {}
        for role in ("raw1", "app", "raw2"):
            made[role] = await tenant_services.create_tenant(
                db, system, slug=f"bench-{role}-{secrets.token_hex(3)}", name=f"Bench {role}"
            )
        system = await tenant_services.system_actor(db)
        app = made["app"]
        local = f"bench{secrets.token_hex(3)}"
        await comms.configure_comms(db, system, app.id, inbound_local_part=local)
        orders, our_ids = [], []
        for n in range(40):
            body = OrderCreate(
                tenant_id=app.id,
                external_ref=f"B-{n}",
                customer={"name": "Bench Customer", "email": f"c{n}@example.com"},
                shipping_address={
                    "line1": "Hauptstr. 1",
                    "city": "Berlin",
                    "postal_code": "10115",
                    "country": "DE",
                },
                currency="EUR",
                lines=[{"sku": "TENT", "description": "Tent", "quantity": 1, "unit_price_minor": 9900}],
            )
            created = await order_services.capture_order(db, system, body, channel=Channel.API)
            orders.append((created.body["number"], created.body["customer_email"]))
            if n < 10:
                async with db.transaction(system.scope) as session:
                    order = await session.get(Order, (app.id, uuid.UUID(str(created.body["id"]))))
                    conversation = await comms.start_conversation_in(
                        session,
                        app.id,
                        channel=MessageChannel.EMAIL,
                        order=order,
                        customer_email=order.customer_email,
                    )
                our_id = f"<ours-{n}-{uuid.uuid4().hex}@orderdesk.bench>"
                await comms.append_message(
                    db,
                    system,
                    conversation.id,
                    comms.MessageDraft(
                        direction=Direction.OUTBOUND,
                        channel=MessageChannel.EMAIL,
                        created_by="bench",
                        subject="Your order has shipped",
                        text_body="It has shipped.",
                        provider_message_id=our_id,
                    ),
                )
                our_ids.append((our_id, order.customer_email))
        conversations = {}
        for role in ("raw1", "raw2"):
            async with db.transaction(system.scope) as session:
                conversation = await comms.start_conversation_in(
                    session, made[role].id, channel=MessageChannel.EMAIL, customer_email="bench@example.com"
                )
                conversations[role] = conversation.id
        return {
            "target": Target(f"{local}@{DOMAIN}", orders, our_ids),
            "raw": {role: (made[role].id, conversations[role]) for role in ("raw1", "raw2")},
        }
    finally:
        await db.dispose()


async def run(args) -> dict:

    from orderdesk.core.migrations import upgrade

    name, owner_url = await create_database(args.server_url)
    try:
        await asyncio.to_thread(upgrade, owner_url)
        settings = bench_settings(owner_url, args.redis_url)
        from orderdesk.web.logging import configure_logging

        configure_logging("WARNING", json=True)
        made = await setup(settings)
        mix = build_mix(args, made["target"])
        sizes = sorted(len(raw) for _, raw in mix)
        print(
            f"{len(mix)} messages, median {sizes[len(sizes) // 2] / 1024:.0f} KiB, "
            f"largest {sizes[-1] / 1024 / 1024:.1f} MiB, total {sum(sizes) / 1024 / 1024:.1f} MiB",
            flush=True,
        )
        app_dsn = plain(settings.app_url)
        phases = []
        for role, label, tag in (("raw1", "raw: parse + INSERT (before)", "r1"),):
            tenant_id, conversation_id = made["raw"][role]
            phases.append(
                await raw_phase(
                    label,
                    app_dsn,
                    tenant_id,
                    conversation_id,
                    fresh_ids(mix, tag),
                    args.concurrency,
                    owner_url,
                )
            )
            print(f"  {label}: {phases[-1].summary()['messages_per_s']} msg/s", flush=True)
        phases.append(await app_phase(settings, made["target"], mix, args.concurrency, owner_url))
        print(f"  {phases[-1].name}: {phases[-1].summary()['messages_per_s']} msg/s", flush=True)
        tenant_id, conversation_id = made["raw"]["raw2"]
        phases.append(
            await raw_phase(
                "raw: parse + INSERT (after)",
                app_dsn,
                tenant_id,
                conversation_id,
                fresh_ids(mix, "r2"),
                args.concurrency,
                owner_url,
            )
        )
        print(f"  {phases[-1].name}: {phases[-1].summary()['messages_per_s']} msg/s", flush=True)
    finally:
        if not args.keep:
            await drop_database(args.server_url, name)
        else:
            print(f"kept database {name}")
    summaries = [p.summary() for p in phases]
    raw_rate = (summaries[0]["messages_per_s"] + summaries[2]["messages_per_s"]) / 2
    raw_p95 = (summaries[0]["p95_ms"] + summaries[2]["p95_ms"]) / 2
    app = summaries[1]

    def cpu(summary: dict) -> float:
        return summary["client_cpu_ms_per_msg"] + summary["db_cpu_ms_per_msg"]

    raw_cpu = (cpu(summaries[0]) + cpu(summaries[2])) / 2
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "params": {"messages": args.messages, "concurrency": args.concurrency, "seed": args.seed},
        "mix": {"median_bytes": sizes[len(sizes) // 2], "max_bytes": sizes[-1], "total_bytes": sum(sizes)},
        "phases": summaries,
        "throughput_ratio_to_raw": round(app["messages_per_s"] / raw_rate, 3),
        "p95_ratio_to_raw": round(app["p95_ms"] / raw_p95, 2),
        "cpu_cost_ratio": round(raw_cpu / cpu(app), 3),
        "p95_goal_met": app["p95_ms"] <= 100,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print()
    print(f"{'phase':<32}{'msg/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}   p95 by kind (ms)")
    for p in result["phases"]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(p["p95_by_kind_ms"].items()))
        figures = f"{p['messages_per_s']:>8}{p['p50_ms']:>9}{p['p95_ms']:>9}{p['p99_ms']:>9}"
        print(f"{p['name']:<32}{figures}   {kinds}")
    print(f"\nOrderDesk / raw throughput (mean of both raw runs): {result['throughput_ratio_to_raw']:.0%}")
    print(f"OrderDesk p95 / raw p95: {result['p95_ratio_to_raw']}x")
    for p in result["phases"]:
        print(
            f"CPU per message, {p['name']}: client {p['client_cpu_ms_per_msg']} ms, "
            f"database {p['db_cpu_ms_per_msg']} ms"
        )
    print(f"CPU-cost ratio (raw CPU per message / OrderDesk's): {result['cpu_cost_ratio']:.0%}")
    print(f"p95 goal (<= 100 ms) met: {result['p95_goal_met']}")
    print(f"load average: {result['machine']['load']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
