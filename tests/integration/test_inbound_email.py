"""Inbound email end to end on real PostgreSQL: SMTP sessions, the HTTP endpoint, threading, bad input."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import uuid
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select, text

from orderdesk.comms import inbound
from orderdesk.comms import services as comms
from orderdesk.comms.models import Conversation, Direction, Message, MessageChannel
from orderdesk.comms.smtp import start_smtp_server
from orderdesk.core.errors import AuthenticationFailed, NotFound, TooLarge
from orderdesk.core.tenancy import Scope
from orderdesk.orders import services as orders
from orderdesk.orders.models import OrderEvent
from orderdesk.orders.states import Action
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem
from tests.conftest import configure_customer_email, make_tenant
from tests.integration.test_workqueue import ROUND_THE_CLOCK, capture
from tests.support.email_fixtures import load, new_message_id

DOMAIN = "inbound.test"


@dataclass
class Desk:
    tenant: object
    address: str
    secret: str
    order: dict
    customer: str


async def make_desk(db, name: str = "Mail Co", *, orders_count: int = 1) -> Desk:
    tenant = await make_tenant(db, name)
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    email = await configure_customer_email(
        db, tenant.id, rotate_inbound_secret=True, known_contacts=["@client-staff.example"]
    )
    created = [await capture(db, tenant) for _ in range(orders_count)]
    order = created[-1]
    return Desk(tenant, f"{email.local_part}@{DOMAIN}", email.secret, order, order["customer_email"])


@pytest.fixture
async def desk(db) -> Desk:
    return await make_desk(db)


async def receive(db, raw: bytes, to: str, **kwargs) -> inbound.InboundResult:
    return await inbound.receive_email(db, raw, recipient=to, domains=(DOMAIN,), **kwargs)


def plain(sender: str, to: str, subject: str, body: str, **headers) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", None) or new_message_id()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


async def stored(db, tenant_id, message_id) -> Message:
    async with db.transaction(Scope.for_tenants(tenant_id)) as session:
        return await session.get(Message, (tenant_id, message_id))


async def conversation_of(db, tenant_id, conversation_id) -> Conversation:
    async with db.transaction(Scope.for_tenants(tenant_id)) as session:
        return await session.get(Conversation, (tenant_id, conversation_id))


async def item_of(db, tenant_id, conversation_id) -> WorkItem:
    async with db.transaction(Scope.for_tenants(tenant_id)) as session:
        return await session.scalar(select(WorkItem).where(WorkItem.conversation_id == conversation_id))


async def timeline_kinds(db, tenant_id, order_id) -> list[str]:
    async with db.transaction(Scope.for_tenants(tenant_id)) as session:
        return list(
            (
                await session.scalars(
                    select(OrderEvent.kind)
                    .where(OrderEvent.tenant_id == tenant_id, OrderEvent.order_id == uuid.UUID(str(order_id)))
                    .order_by(OrderEvent.seq)
                )
            ).all()
        )


async def outbound_to(db, desk: Desk, conversation_id) -> str:
    """Our reply in a conversation, as the outbound side stores it: returns its Message-ID."""
    system = await tenants.system_actor(db)
    our_id = new_message_id("orderdesk.test")
    await comms.append_message(
        db,
        system,
        conversation_id,
        comms.MessageDraft(
            direction=Direction.OUTBOUND,
            channel=MessageChannel.EMAIL,
            created_by="Agent",
            subject=f"Your order #{desk.order['number']}",
            text_body="It has shipped.",
            provider_message_id=our_id,
        ),
    )
    return our_id


# ---------------------------------------------------------------- threading matrix


async def test_order_number_in_subject_from_the_customer_joins_the_order(db, desk):
    result = await receive(
        db,
        plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "Where is my order?"),
        desk.address,
    )
    assert result.placement == "order_number" and not result.duplicate
    conversation = await conversation_of(db, desk.tenant.id, result.conversation_id)
    assert str(conversation.order_id) == desk.order["id"]
    assert "message_received" in await timeline_kinds(db, desk.tenant.id, desk.order["id"])
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert item.kind == "customer_message" and str(item.order_id) == desk.order["id"]
    assert "where is my order" in item.title
    assert f"answer with status of order #{desk.order['number']}" in item.detail


async def test_order_number_in_the_body_only_also_threads(db, desk):
    body = f"Hello,\nI ordered last week, order number {desk.order['number']}. When will it arrive?"
    result = await receive(db, plain(desk.customer, desk.address, "Question", body), desk.address)
    assert result.placement == "order_number"


async def test_a_stranger_naming_an_order_goes_to_triage_not_to_the_order(db, desk):
    before = await timeline_kinds(db, desk.tenant.id, desk.order["id"])
    result = await receive(
        db,
        plain(
            "someone@elsewhere.example", desk.address, f"Cancel order #{desk.order['number']}", "cancel it"
        ),
        desk.address,
    )
    assert result.placement == "triage"
    assert "not its customer" in result.note
    conversation = await conversation_of(db, desk.tenant.id, result.conversation_id)
    assert conversation.order_id is None
    assert await timeline_kinds(db, desk.tenant.id, desk.order["id"]) == before
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert item.title.startswith("Triage:") and item.order_id is None and item.status == "open"


async def test_a_known_contact_of_the_client_may_write_about_any_order(db, desk):
    result = await receive(
        db,
        plain("ops@client-staff.example", desk.address, f"Order {desk.order['number']}", "please check"),
        desk.address,
    )
    assert result.placement == "order_number" and "known contact" in result.note


async def test_the_reply_token_threads_and_still_checks_the_sender(db, desk):
    first = await receive(
        db, plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "hi"), desk.address
    )
    conversation = await conversation_of(db, desk.tenant.id, first.conversation_id)
    local = desk.address.split("@")[0]
    token_address = f"{local}+c_{conversation.reply_token}@{DOMAIN}"
    reply = await receive(db, plain(desk.customer, token_address, "Re: hi", "thanks"), token_address)
    assert reply.placement == "token" and reply.conversation_id == first.conversation_id
    intruder = await receive(
        db, plain("x@evil.example", token_address, "Re: hi", "send it to me"), token_address
    )
    assert intruder.placement == "triage" and intruder.conversation_id != first.conversation_id


async def test_in_reply_to_one_of_our_message_ids_threads_to_that_conversation(db, desk):
    first = await receive(
        db, plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "hi"), desk.address
    )
    ours = await outbound_to(db, desk, first.conversation_id)
    raw = load(
        "gmail_reply_quoted.eml", sender=desk.customer, to=desk.address, order=999999, in_reply_to=ours
    )
    reply = await receive(db, raw, desk.address)
    assert reply.placement == "headers" and reply.conversation_id == first.conversation_id
    message = await stored(db, desk.tenant.id, reply.message_id)
    assert message.intent == "where_is_my_order"
    assert "wrote:" not in message.summary and ">" not in message.summary
    assert message.summary.startswith("Hi, thanks! But where is my parcel?")


async def test_another_tenants_order_number_is_never_attached(db):
    mine = await make_desk(db, "Mine", orders_count=1)
    theirs = await make_desk(db, "Theirs", orders_count=3)  # numbers up to #1003; mine has only #1001
    number = theirs.order["number"]
    assert number != mine.order["number"]
    before = await timeline_kinds(db, theirs.tenant.id, theirs.order["id"])
    result = await receive(
        db, plain(theirs.customer, mine.address, f"Order #{number}", "where is it?"), mine.address
    )
    assert result.tenant_id == mine.tenant.id
    assert result.placement == "triage" and f"#{number}" in result.note and "does not have" in result.note
    assert await timeline_kinds(db, theirs.tenant.id, theirs.order["id"]) == before
    async with db.transaction(Scope.for_tenants(theirs.tenant.id)) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


async def test_nothing_to_thread_by_starts_a_new_conversation_for_an_agent(db, desk):
    result = await receive(
        db, plain("new@customer.example", desk.address, "Hello", "Do you ship to Norway?"), desk.address
    )
    assert result.placement == "new"
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert item.title.startswith("New customer message") and "find the order" in item.detail


# ---------------------------------------------------------------- shapes of real mail


async def test_outlook_html_only_german_cancellation_gets_the_state_machine_suggestion(db, desk):
    raw = load(
        "outlook_reply_html_only_de.eml", sender=desk.customer, to=desk.address, order=desk.order["number"]
    )
    result = await receive(db, raw, desk.address)
    message = await stored(db, desk.tenant.id, result.message_id)
    assert message.subject == f"AW: Bestellung {desk.order['number']} – bitte stornieren"
    assert message.intent == "cancel" and message.language == "de" and message.intent_confidence >= 0.8
    assert "Vielen Dank für Ihre Bestellung" not in message.summary  # the quoted original is gone
    assert "<style" not in message.html_body and "Guten Tag" in message.html_body
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert f"cancel order #{desk.order['number']}: allowed, not yet shipped" in item.detail


async def test_cancelling_a_packed_order_is_suggested_as_not_allowed(db, desk):
    system = await tenants.system_actor(db)
    order_id = uuid.UUID(desk.order["id"])
    for action in (Action.VERIFY, Action.ALLOCATE, Action.START_PICKING, Action.PACK):
        await orders.perform_action(db, system, order_id, action)
    raw = plain(
        desk.customer, desk.address, f"Cancel order #{desk.order['number']}", "Please cancel my order."
    )
    result = await receive(db, raw, desk.address)
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert "not allowed without the warehouse: packed" in item.detail


async def test_apple_mail_forward_keeps_attachments_and_inline_image(db, desk):
    raw = load(
        "apple_mail_forward_with_attachments_es.eml",
        sender=desk.customer,
        to=desk.address,
        order=desk.order["number"],
    )
    result = await receive(db, raw, desk.address)
    assert result.placement == "order_number"
    system = await tenants.system_actor(db)
    view = await comms.get_conversation(db, system, result.conversation_id)
    message = view.messages[-1]
    assert message.intent == "where_is_my_order" and message.language == "es"
    by_name = {a.filename: a for a in message.attachments}
    assert (
        by_name["factura nº 42.pdf"].content_type == "application/pdf"
        and not by_name["factura nº 42.pdf"].is_inline
    )
    assert by_name["foto.png"].is_inline and by_name["foto.png"].content_id == "foto-paquete@apple.local"
    _meta, data = await comms.get_attachment(db, system, by_name["factura nº 42.pdf"].id)
    assert data.startswith(b"%PDF")
    assert 'src="cid:foto-paquete@apple.local"' in message.html_body


async def test_latin1_body_and_encoded_word_subject_are_decoded(db, desk):
    raw = load("latin1_body.eml", sender=desk.customer, to=desk.address, order=desk.order["number"])
    result = await receive(db, raw, desk.address)
    message = await stored(db, desk.tenant.id, result.message_id)
    assert message.subject == f"Adresse ändern für Bestellung {desk.order['number']}"
    assert "Große Straße 5" in message.text_body
    assert message.intent == "change_address"
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert "change the address of order" in item.detail and "allowed, not yet packed" in item.detail


# ---------------------------------------------------------------- bad input


async def test_scripts_and_remote_images_are_removed(db, desk):
    raw = load(
        "scripts_and_remote_images.eml", sender=desk.customer, to=desk.address, order=desk.order["number"]
    )
    message = await stored(db, desk.tenant.id, (await receive(db, raw, desk.address)).message_id)
    html = message.html_body
    for forbidden in (
        "<script",
        "onload",
        "onclick",
        "javascript:",
        "tracker.example",
        "93.184.216.34",
        "<iframe",
        "<form",
        "<style",
    ):
        assert forbidden not in html, forbidden
    assert 'src="cid:logo@local"' in html and 'href="https://shop.example/orders"' in html


async def test_zero_width_and_direction_controls_are_removed_from_the_subject(db, desk):
    raw = load("bidi_subject.eml", sender=desk.customer, to=desk.address, order=desk.order["number"])
    message = await stored(db, desk.tenant.id, (await receive(db, raw, desk.address)).message_id)
    assert message.subject == f"Invoice #{desk.order['number']} gpj.exe refund"
    assert all(ord(ch) not in (0x200B, 0x202E, 0x202C, 0x2066, 0x2069) for ch in message.subject)


async def test_malformed_mime_is_stored_in_triage_with_what_went_wrong(db, desk):
    raw = load("malformed_mime.eml", to=desk.address)
    result = await receive(db, raw, desk.address, envelope_sender="someone@example.net")
    assert result.placement == "triage"
    message = await stored(db, desk.tenant.id, result.message_id)
    assert message.raw_mime == raw  # nothing lost
    assert message.sender_address == "someone@example.net"  # from the envelope, From was empty
    item = await item_of(db, desk.tenant.id, result.conversation_id)
    assert "no usable From address" in item.detail and "CloseBoundaryNotFoundDefect" in item.detail


async def test_a_message_without_any_headers_is_still_kept(db, desk):
    raw = b"just some text, no headers at all\r\n"
    result = await receive(db, raw, desk.address, envelope_sender="")
    message = await stored(db, desk.tenant.id, result.message_id)
    assert message.placement == "triage" and message.raw_mime == raw
    # Without a Message-ID the bytes identify it: the redelivery is the same message.
    again = await receive(db, raw, desk.address, envelope_sender="")
    assert again.duplicate and again.message_id == result.message_id


async def test_auto_replies_and_bounces_are_stored_but_flagged_never_to_answer(db, desk):
    first = await receive(
        db, plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "hi"), desk.address
    )
    ours = await outbound_to(db, desk, first.conversation_id)
    ooo = await receive(
        db, load("out_of_office.eml", sender=desk.customer, to=desk.address, in_reply_to=ours), desk.address
    )
    bounce = await receive(db, load("bounce_dsn.eml", to=desk.address), desk.address, envelope_sender="")
    ooo_message = await stored(db, desk.tenant.id, ooo.message_id)
    bounce_message = await stored(db, desk.tenant.id, bounce.message_id)
    assert ooo_message.is_automated and "auto-replied" in ooo_message.automated_reason
    assert bounce_message.is_automated
    assert ooo.conversation_id == first.conversation_id  # still threaded, so the agent sees it
    item = await item_of(db, desk.tenant.id, bounce.conversation_id)
    assert item.title.startswith("Automatic mail")


async def test_unknown_recipients_oversized_mail_and_wrong_secrets_are_refused(db, desk):
    raw = plain(desk.customer, desk.address, "hi", "hi")
    with pytest.raises(NotFound):
        await receive(db, raw, f"nobody@{DOMAIN}")
    with pytest.raises(NotFound):
        await receive(db, raw, desk.address.replace(DOMAIN, "other-domain.example"))
    with pytest.raises(TooLarge):
        await receive(db, b"x" * (20 * 1024 * 1024), desk.address)
    with pytest.raises(AuthenticationFailed):
        await receive(db, raw, desk.address, secret="wrong", require_secret=True)
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


# ---------------------------------------------------------------- real SMTP


@pytest.fixture
async def smtp_port(db):
    server = await start_smtp_server(db, host="127.0.0.1", port=0, domains=(DOMAIN,))
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def smtp_send(port: int, sender: str, recipients: list[str], raw: bytes) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as connection:
        return connection.sendmail(sender, recipients, raw)


async def test_smtp_session_delivers_and_three_redeliveries_are_one_message(db, desk, smtp_port):
    raw = load("gmail_reply_quoted.eml", sender=desk.customer, to=desk.address, order=desk.order["number"])
    for _ in range(3):
        refused = await asyncio.to_thread(smtp_send, smtp_port, desk.customer, [desk.address], raw)
        assert refused == {}
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        messages = (await session.scalars(select(Message))).all()
        items = await session.scalar(
            select(func.count()).select_from(WorkItem).where(WorkItem.kind == "customer_message")
        )
    assert len(messages) == 1 and items == 1
    assert messages[0].placement == "order_number"
    assert (await timeline_kinds(db, desk.tenant.id, desk.order["id"])).count("message_received") == 1


async def test_smtp_refuses_unknown_recipients_at_rcpt(db, desk, smtp_port):
    def session() -> tuple:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as connection:
            connection.ehlo()
            connection.mail(desk.customer)
            unknown = connection.rcpt(f"nobody@{DOMAIN}")
            foreign_domain = connection.rcpt(desk.address.replace(DOMAIN, "elsewhere.example"))
            known = connection.rcpt(desk.address)
            return unknown, foreign_domain, known

    unknown, foreign_domain, known = await asyncio.to_thread(session)
    assert unknown[0] == 550 and foreign_domain[0] == 550 and known[0] == 250


async def test_smtp_refuses_a_20_mb_message_with_552(db, desk, smtp_port):
    big = plain(desk.customer, desk.address, "big", "x") + b"\r\n" + (b"A" * 998 + b"\r\n") * 21000

    def send_declared() -> int:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as connection:
            try:
                connection.sendmail(desk.customer, [desk.address], big)
            except smtplib.SMTPSenderRefused as exc:  # refused at MAIL FROM by its declared SIZE
                return exc.smtp_code
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code
        return 250

    def send_undeclared() -> int:
        # A client that does not declare SIZE is stopped at the end of DATA.
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as connection:
            connection.ehlo()
            connection.mail(desk.customer)
            connection.rcpt(desk.address)
            code, _ = connection.data(big)
            return code

    assert await asyncio.to_thread(send_declared) == 552
    assert await asyncio.to_thread(send_undeclared) == 552
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


async def test_a_spoofed_to_header_does_not_choose_the_tenant(db, smtp_port):
    """The envelope recipient decides: a To: naming tenant A does not put B's mail at A."""
    a = await make_desk(db, "A Co")
    b = await make_desk(db, "B Co")
    raw = plain(b.customer, a.address, f"Order #{a.order['number']}", "cancel please")
    await asyncio.to_thread(smtp_send, smtp_port, b.customer, [b.address], raw)
    async with db.transaction(Scope.for_tenants(a.tenant.id)) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0
    async with db.transaction(Scope.for_tenants(b.tenant.id)) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


# ---------------------------------------------------------------- the HTTP endpoint


async def test_http_endpoint_stores_dedupes_and_authenticates_per_tenant(client, db):
    a = await make_desk(db, "Http A")
    b = await make_desk(db, "Http B")
    raw = load("gmail_reply_quoted.eml", sender=a.customer, to=a.address, order=a.order["number"])
    url = f"/hooks/inbound-email?recipient={a.address}"
    headers = {"X-Inbound-Secret": a.secret, "Content-Type": "message/rfc822"}
    first = await client.post(url, content=raw, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["placement"] == "order_number"
    basic = base64.b64encode(f"inbound:{a.secret}".encode()).decode()
    again = await client.post(url, content=raw, headers={"Authorization": f"Basic {basic}"})
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert again.json()["message_id"] == first.json()["message_id"]
    # B's secret does not open A's address, and a wrong one neither.
    for secret in (b.secret, "odin_wrong"):
        refused = await client.post(url, content=raw, headers={"X-Inbound-Secret": secret})
        assert refused.status_code == 401 and refused.headers["content-type"].startswith(
            "application/problem+json"
        )
    unknown = await client.post(
        f"/hooks/inbound-email?recipient=nobody@{DOMAIN}", content=raw, headers=headers
    )
    assert unknown.status_code == 404
    too_big = await client.post(url, content=b"x" * (20 * 1024 * 1024), headers=headers)
    assert too_big.status_code == 413
    missing = await client.post("/hooks/inbound-email", content=b"", headers=headers)
    assert missing.status_code == 400
    assert {e["field"] for e in missing.json()["errors"]} == {"recipient", "body"}


async def test_three_concurrent_deliveries_store_one_message(db, desk):
    raw = plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "where is it?")
    results = await asyncio.gather(*(receive(db, raw, desk.address) for _ in range(3)))
    assert sorted(r.duplicate for r in results) == [False, True, True]
    assert len({r.message_id for r in results}) == 1
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
        items = await session.scalar(
            select(func.count()).select_from(WorkItem).where(WorkItem.kind == "customer_message")
        )
    assert conversations == 1 and items == 1


async def test_one_smtp_message_to_two_tenants_is_stored_at_each_separately(db, smtp_port):
    a = await make_desk(db, "Both A")
    b = await make_desk(db, "Both B")
    raw = plain("kim@example.com", f"{a.address}, {b.address}", "Hello both", "Do you ship to Norway?")
    refused = await asyncio.to_thread(smtp_send, smtp_port, "kim@example.com", [a.address, b.address], raw)
    assert refused == {}
    for desk_ in (a, b):
        async with db.transaction(Scope.for_tenants(desk_.tenant.id)) as session:
            rows = (await session.scalars(select(Message))).all()
        assert len(rows) == 1 and rows[0].tenant_id == desk_.tenant.id


async def test_where_is_my_order_with_the_tenants_number_pattern_round_trip(db, smtp_port):
    """Customer asks about "ACME-<n>" → item with the suggested answer → our reply (as the
    outbound side stores it) → the customer's answer to the reply address threads back and
    puts the item, parked waiting on the customer, back in the queue."""
    from orderdesk.accounts.models import StaffRole
    from orderdesk.workqueue.states import WorkOutcome
    from tests.conftest import make_staff
    from tests.integration.test_workqueue import staff

    desk = await make_desk(db, "Acme Pattern")
    system = await tenants.system_actor(db)
    await comms.configure_comms(db, system, desk.tenant.id, order_number_pattern=r"ACME-(\d{3,10})")
    number = desk.order["number"]
    ask = plain(desk.customer, desk.address, f"where is my order ACME-{number}?", "Hello, any news?")
    await asyncio.to_thread(smtp_send, smtp_port, desk.customer, [desk.address], ask)
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        conversation = await session.scalar(select(Conversation))
    item = await item_of(db, desk.tenant.id, conversation.id)
    assert str(conversation.order_id) == desk.order["id"]
    assert (
        f"Suggested: answer with status of order #{number}: awaiting verification, not shipped yet"
        in item.detail
    )

    # The agent answers (stored as the outbound side will) and waits for the customer.
    agent = staff(await make_staff(db, StaffRole.AGENT, desk.tenant), StaffRole.AGENT, desk.tenant)
    for _ in range(5):
        claimed = await work.claim_next_work_item(db, agent)
        if claimed.id == item.id:
            break
        await work.complete_work_item(db, agent, claimed.id, WorkOutcome.NO_ACTION_NEEDED)
    ours = await outbound_to(db, desk, conversation.id)
    await work.wait_on(db, agent, item.id, "customer")

    local, _, domain = desk.address.partition("@")
    reply_to = comms.reply_address(local, conversation.reply_token, domain)
    answer = plain(desk.customer, reply_to, "Re: Your order", "Thanks! Friday is fine.", In_Reply_To=ours)
    await asyncio.to_thread(smtp_send, smtp_port, desk.customer, [reply_to], answer)
    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        messages = (
            await session.scalars(
                select(Message).where(Message.conversation_id == conversation.id).order_by(Message.created_at)
            )
        ).all()
    assert [m.direction for m in messages] == ["in", "out", "in"]
    assert messages[-1].placement == "token"
    assert (await work.get_work_item(db, agent, item.id)).status == "open"


async def test_a_reply_to_an_order_costs_a_fixed_handful_of_statements(db, desk):
    """Each round trip costs more than the work it does for a short reply (bench/inbound_email.py):
    the address, the duplicate check, the settings and the threading look-ups are folded."""
    from sqlalchemy import event

    first = plain(desk.customer, desk.address, f"Order #{desk.order['number']}", "Where is my order?")
    await receive(db, first, desk.address)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split(None, 1)[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await receive(
            db,
            plain(desk.customer, desk.address, f"Re: Order #{desk.order['number']}", "Any news?"),
            desk.address,
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert result.placement == "order_number" and not result.duplicate
    # Scope (+ address), address, scope + lock, facts, order (locked) with the sender's
    # conversation, message + conversation, work item read and update, order's timeline
    # sequence and event: 10, where it was 19.
    assert len(statements) <= 10, statements
    assert (await timeline_kinds(db, desk.tenant.id, desk.order["id"])).count("message_received") == 2


async def test_the_order_a_message_joins_is_locked_until_the_message_is_stored(db, desk):
    """The threading query takes the order's row lock itself: an order change waits for it."""
    from orderdesk.comms.inbound import _order_of_conversation_statement
    from orderdesk.orders.models import Order

    async with db.transaction(Scope.for_tenants(desk.tenant.id)) as session:
        row = (
            await session.execute(
                _order_of_conversation_statement(),
                {"tenant_id": desk.tenant.id, "order_id": uuid.UUID(desk.order["id"])},
            )
        ).one()
        assert row.Order.number == desk.order["number"] and row.holds == [] and row.tracking is None
        async with db.transaction(Scope.for_tenants(desk.tenant.id)) as other:
            await other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(Exception, match="lock timeout"):
                await other.execute(
                    select(Order.id).where(Order.id == uuid.UUID(desk.order["id"])).with_for_update()
                )
