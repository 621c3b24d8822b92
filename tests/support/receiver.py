"""A webhook receiver on 127.0.0.1 for tests: records every request, answers as told."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import uvicorn


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # what we answered, once we have

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


Responder = Callable[[Received, int], Awaitable[tuple[int, dict[str, str]]]]


async def always_ok(_request: Received, _count: int) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    respond: Responder = always_ok
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request (kill -9): nothing was delivered
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Received({k.decode(): v.decode() for k, v in scope["headers"]}, body)
        self.received.append(request)
        status, headers = await self.respond(request, len(self.received))
        request.status = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}' if status < 300 else b"nope"})

    async def start(self) -> Receiver:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            await self._task

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.payload["type"] == event_type]
