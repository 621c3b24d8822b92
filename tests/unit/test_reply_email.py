"""The reply as an RFC 5322 message: line breaks smuggled into names or subjects cannot add headers."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from orderdesk.comms.sending import build_reply_email


def test_line_breaks_in_names_and_subjects_cannot_inject_headers():
    message = SimpleNamespace(
        recipients=[{"kind": "to", "address": "kim@example.com", "name": "Kim\r\nBcc: victim@example.net"}],
        subject="Re: order\r\nBcc: victim@example.net",
        created_at=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
        provider_message_id="<reply-1@acme.example>",
        in_reply_to="<q-1@customer.example>",
        references=["<q-0@customer.example>", "<q-1@customer.example>"],
        is_automated=True,
        text_body="Hello",
    )
    conversation = SimpleNamespace(customer_email="kim@example.com", reply_token="abcdefghijklmnop")
    settings = SimpleNamespace(
        from_name="Acme\nSupport", from_address="support@acme.example", inbound_local_part="acme"
    )
    email = build_reply_email(message, conversation, settings, "inbound.example")
    assert email.get_all("Bcc") is None
    assert email["Subject"] == "Re: order Bcc: victim@example.net"
    assert email["From"] == "Acme Support <support@acme.example>"
    assert email["Reply-To"] == "acme+c_abcdefghijklmnop@inbound.example"
    assert email["References"] == "<q-0@customer.example> <q-1@customer.example>"
    assert email["Auto-Submitted"] == "auto-replied"
