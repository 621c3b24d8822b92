"""Raw email fixtures (tests/fixtures/email) with their placeholders filled in."""

from __future__ import annotations

import uuid
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"


def new_message_id(domain: str = "mail.example.com") -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def load(
    name: str,
    *,
    sender: str = "kim@example.com",
    to: str = "shop@inbound.example",
    order: int | str = 1042,
    message_id: str | None = None,
    in_reply_to: str = "<none@example.invalid>",
    references: str | None = None,
) -> bytes:
    """The fixture's bytes; placeholders are ASCII, so non-UTF-8 fixtures stay intact."""
    raw = (FIXTURES / name).read_bytes()
    values = {
        "{{FROM}}": sender,
        "{{TO}}": to,
        "{{ORDER}}": str(order),
        "{{MSGID}}": message_id or new_message_id(),
        "{{IN_REPLY_TO}}": in_reply_to,
        "{{REFERENCES}}": references or in_reply_to,
    }
    for key, value in values.items():
        raw = raw.replace(key.encode(), value.encode())
    return raw
