"""A small HTTP/1.1 load generator: keep-alive connections, closed or open loop.

Run by `bench/intake.py` as a child process (`python bench/loadgen.py SPEC OUT`), so
its CPU is never the server's event loop. It speaks just enough HTTP/1.1 for our
server (Content-Length bodies, keep-alive) and does almost no work per request:
a request is a few byte joins, a response is one `find` and one slice.

Closed loop: every connection sends its next request as soon as the last answer
arrives (the maximum rate). Open loop: requests are due at a fixed rate whatever
the server does, and latency counts from when a request was *due*, so a stalled
server shows up in the tail instead of silently slowing the clients down.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

# The body the benchmark posts: the integration tests' order, two lines, paid.
# external_ref, the customer's email and the Idempotency-Key are unique per request.
ORDER_TEMPLATE = {
    "external_ref": "@REF@",
    "customer": {"name": "Erika Mustermann", "email": "@REF@@example.com", "phone": "030 1234567"},
    "shipping_address": {
        "line1": "Unter den Linden 1",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "currency": "EUR",
    "lines": [
        {
            "sku": "TENT-2P",
            "description": "Tent",
            "quantity": 2,
            "unit_price_minor": 19900,
            "tax_minor": 7562,
        },
        {"sku": "MAT-1", "quantity": 1, "unit_price_minor": 2500},
    ],
    "shipping_minor": 495,
    "payment_status": "paid",
    "tags": ["Summer", "vip"],
}
REF_MARK = "@REF@"


class RequestFactory:
    """Builds raw request bytes; `intake` requests get a unique reference each time."""

    def __init__(self, kind: str, host: str, port: int, api_keys: list[str], ref_prefix: str) -> None:
        self.kind = kind
        self.host = f"{host}:{port}".encode()
        self.keys = [k.encode() for k in api_keys]
        self.prefix = ref_prefix
        self.counter = itertools.count()
        self.body_parts = [p.encode() for p in json.dumps(ORDER_TEMPLATE).split(REF_MARK)]
        self.healthz = b"GET /healthz HTTP/1.1\r\nHost: " + self.host + b"\r\n\r\n"

    def __call__(self) -> bytes:
        if self.kind == "healthz":
            return self.healthz
        n = next(self.counter)
        ref = f"{self.prefix}-{n}".encode()
        body = ref.join(self.body_parts)
        key = self.keys[n % len(self.keys)]
        return b"".join(
            (
                b"POST /api/v1/orders HTTP/1.1\r\nHost: ",
                self.host,
                b"\r\nAuthorization: Bearer ",
                key,
                b"\r\nIdempotency-Key: ",
                ref,
                b"\r\nContent-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.head_end = -1
        self.message_end = -1
        self.status = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head_end < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            start = head.find(b"\r\ncontent-length:")
            if start < 0:
                self.waiter.set_exception(ValueError("response without Content-Length"))
                return
            stop = head.find(b"\r\n", start + 2)
            length = int(head[start + 17 : stop if stop >= 0 else None])
            self.head_end = end + 4
            self.message_end = self.head_end + length
        if len(self.buffer) >= self.message_end:
            body = bytes(self.buffer[self.head_end : self.message_end])
            del self.buffer[: self.message_end]
            self.head_end = self.message_end = -1
            self.waiter.set_result((self.status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Tally:
    """What one child saw inside the measured window."""

    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    late: int = 0  # open loop: requests sent >5 ms after they were due (no free connection)
    sample_failure: str | None = None

    def record(self, status: int, body: bytes, latency: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(latency * 1000)
        if status >= 300 and self.sample_failure is None:
            self.sample_failure = f"{status}: {body[:300]!r}"


async def _closed_loop(conns, make, window, tally: Tally) -> None:
    measure_from, measure_to = window

    async def client(conn: HttpConnection) -> None:
        while (started := time.perf_counter()) < measure_to:
            try:
                status, body = await conn.request(make())
            except (ConnectionError, ValueError):
                if started >= measure_from:
                    tally.errors += 1
                return
            done = time.perf_counter()
            # Throughput counts what completed inside the window, whenever it started.
            if measure_from <= done <= measure_to:
                tally.record(status, body, done - started)

    await asyncio.gather(*(client(c) for c in conns))


async def _open_loop(conns, make, window, rate: float, warm_from: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    measure_from, measure_to = window
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for conn in conns:
        free.put_nowait(conn)
    pending: set[asyncio.Task] = set()

    async def fire(conn: HttpConnection, due: float, counted: bool) -> None:
        try:
            status, body = await conn.request(make())
        except (ConnectionError, ValueError):
            if counted:
                tally.errors += 1
            return
        if counted:
            tally.record(status, body, time.perf_counter() - due)
        free.put_nowait(conn)

    for i in itertools.count():
        due = warm_from + i / rate
        if due >= measure_to:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await free.get()
        counted = due >= measure_from
        if counted and time.perf_counter() - due > 0.005:
            tally.late += 1
        task = loop.create_task(fire(conn, due, counted))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)


async def run(spec: dict) -> dict:
    """Connect, wait for the common start time, load, and report what was measured."""
    loop = asyncio.get_running_loop()
    make = RequestFactory(
        spec["kind"], spec["host"], spec["port"], spec.get("api_keys", []), spec["ref_prefix"]
    )
    conns = []
    for _ in range(spec["connections"]):
        _, protocol = await loop.create_connection(HttpConnection, spec["host"], spec["port"])
        conns.append(protocol)
    # Wall clock to perf_counter (the loop's clock has 1 ms steps under uvloop): every
    # child starts and measures over the same interval.
    start = time.perf_counter() + max(0.0, spec["start_at"] - time.time())
    window = (start + spec["warmup"], start + spec["warmup"] + spec["duration"])
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    tally = Tally()
    cpu_marks = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        cpu_marks["from"] = time.process_time()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        cpu_marks["to"] = time.process_time()

    marker = loop.create_task(mark_cpu())
    if spec["mode"] == "closed":
        await _closed_loop(conns, make, window, tally)
    else:
        await _open_loop(conns, make, window, spec["rate"], start, tally)
    await marker
    for conn in conns:
        conn.transport.close()
    return {
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "latencies_ms": tally.latencies_ms,
        "errors": tally.errors,
        "late": tally.late,
        "sample_failure": tally.sample_failure,
        "window_s": spec["duration"],
        "cpu_s": cpu_marks["to"] - cpu_marks["from"],
    }


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
