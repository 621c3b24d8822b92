"""A real SMTP server for tests (aiosmtpd on an ephemeral port) that records what it is sent.

It can answer a number of deliveries with a temporary (4xx) or permanent (5xx)
refusal first, to exercise the sender's retries.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    # Answer this many DATA commands with `refusal` before accepting.
    refuse_next: int = 0
    refusal: str = "451 4.3.0 Mailbox busy, try again later"
    attempts: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.attempts += 1
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return self.refusal
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content or envelope.content, policy=policy.default),
            )
        )
        return "250 2.0.0 Accepted"


class SmtpReceiver:
    """`with SmtpReceiver() as smtp:` … `smtp.port`, `smtp.handler.received`."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.controller.stop()
