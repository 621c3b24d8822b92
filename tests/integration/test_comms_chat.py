"""The chat channel: signed webhook in, the same conversations and work items, signed replies out."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from orderdesk.accounts.models import StaffRole
from orderdesk.comms import chat, outbound, sending
from orderdesk.comms import services as comms
from orderdesk.comms.models import Conversation, Message
from orderdesk.core.tenancy import Scope
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem
from tests.conftest import make_staff, make_tenant
from tests.integration.test_comms_outbound import policy_for
from tests.integration.test_workqueue import ROUND_THE_CLOCK, capture, staff
from tests.support.receiver import Receiver


class ChatDesk:
    def __init__(self, tenant, order, secret, agent, receiver) -> None:
        self.tenant, self.order, self.secret, self.agent, self.receiver = (
            tenant,
            order,
            secret,
            agent,
            receiver,
        )

    @property
    def scope(self) -> Scope:
        return Scope.for_tenants(self.tenant.id)

    @property
    def path(self) -> str:
        return f"/hooks/chat/{self.tenant.id}"


@pytest.fixture
async def chat_desk(db):
    receiver = await Receiver().start()
    tenant = await make_tenant(db, "Chat Co")
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    _settings, secret = await outbound.configure_outbound(
        db,
        system,
        tenant.id,
        outbound.OutboundSettingsFields(chat_reply_url=receiver.url, rotate_chat_secret=True),
        allow_private=True,
    )
    order = await capture(db, tenant)
    person = await make_staff(db, StaffRole.AGENT, tenant)
    yield ChatDesk(tenant, order, secret, staff(person, StaffRole.AGENT, tenant), receiver)
    await receiver.stop()


def payload(desk: ChatDesk, **changes) -> dict:
    body = {
        "conversation_id": "chat-1",
        "message_id": f"m-{uuid.uuid4().hex[:8]}",
        "sender": {"name": "Kim Example", "email": desk.order["customer_email"]},
        "text": f"Where is my order {desk.order['number']}?",
        "order_number": desk.order["number"],
    }
    body.update(changes)
    return body


async def post(client, desk: ChatDesk, body, *, secret: str | None = None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    return await client.post(
        desk.path,
        content=data,
        headers={
            "Content-Type": "application/json",
            chat.SIGNATURE_HEADER: chat.sign(secret or desk.secret, data),
        },
    )


async def test_a_signed_chat_message_joins_the_order_and_opens_work(client, db, chat_desk):
    first = await post(client, chat_desk, payload(chat_desk))
    assert first.status_code == 201, first.text
    assert first.json()["placement"] == "order_number"
    again = await post(
        client, chat_desk, payload(chat_desk, message_id="m-2", text="Any news?", order_number=None)
    )
    assert again.status_code == 201 and again.json()["conversation_id"] == first.json()["conversation_id"]
    async with db.transaction(chat_desk.scope) as session:
        conversation = await session.get(
            Conversation, (chat_desk.tenant.id, uuid.UUID(first.json()["conversation_id"]))
        )
        item = await session.scalar(select(WorkItem).where(WorkItem.conversation_id == conversation.id))
        count = await session.scalar(select(func.count()).select_from(Message))
    assert str(conversation.order_id) == chat_desk.order["id"] and conversation.channel.value == "chat"
    assert count == 2 and item.kind == "customer_message" and item.channel == "chat"
    assert "Suggested: answer with status of order" in item.detail


async def test_the_same_chat_message_three_times_is_one(client, db, chat_desk):
    body = payload(chat_desk)
    answers = [await post(client, chat_desk, body) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 200, 200]
    assert len({a.json()["message_id"] for a in answers}) == 1


async def test_a_sender_who_is_not_the_customer_goes_to_triage(client, db, chat_desk):
    answer = await post(
        client, chat_desk, payload(chat_desk, sender={"name": "Mallory", "email": "mallory@evil.example"})
    )
    assert answer.status_code == 201 and answer.json()["placement"] == "triage"
    async with db.transaction(chat_desk.scope) as session:
        conversation = await session.get(
            Conversation, (chat_desk.tenant.id, uuid.UUID(answer.json()["conversation_id"]))
        )
    assert conversation.order_id is None


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "no signature", "other tenant", "garbage signature"],
)
async def test_bad_signatures_are_refused_with_one_answer(client, db, chat_desk, tamper):
    data = json.dumps(payload(chat_desk)).encode()
    headers = {"Content-Type": "application/json", chat.SIGNATURE_HEADER: chat.sign(chat_desk.secret, data)}
    path = chat_desk.path
    if tamper == "wrong secret":
        headers[chat.SIGNATURE_HEADER] = chat.sign("not-the-secret", data)
    elif tamper == "no signature":
        del headers[chat.SIGNATURE_HEADER]
    elif tamper == "other tenant":
        path = f"/hooks/chat/{uuid.uuid4()}"
    else:
        headers[chat.SIGNATURE_HEADER] = "%%%"
    answer = await client.post(path, content=data, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == chat.REJECTED
    async with db.transaction(chat_desk.scope) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


DROP = object()  # leave the field out


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"{not json", "body", "not valid JSON"),
        ({"conversation_id": DROP}, "conversation_id", "Field required"),
        ({"text": ""}, "text", "a message needs text or an attachment"),
        ({"sender": {"email": "no-at-sign"}}, "sender.email", "should match pattern"),
        (
            {"attachments": [{"filename": "a.txt", "content_type": "text/plain", "data": "%%"}]},
            "attachments.0.data",
            "not valid base64",
        ),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
        ({"text": "x" * 20_001}, "text", "at most 20000"),
    ],
)
async def test_bad_bodies_name_the_field(client, db, chat_desk, body, field, message):
    if isinstance(body, bytes):
        raw = body
    else:
        merged = {k: v for k, v in {**payload(chat_desk), **body}.items() if v is not DROP}
        raw = json.dumps(merged).encode()
    answer = await post(client, chat_desk, None, raw=raw)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    errors = {e["field"]: e["message"] for e in problem["errors"]}
    assert field in errors and message in errors[field], errors


async def test_an_attachment_is_stored(client, db, chat_desk):
    data = base64.b64encode(b"photo bytes").decode()
    answer = await post(
        client,
        chat_desk,
        payload(chat_desk, attachments=[{"filename": "box.jpg", "content_type": "image/jpeg", "data": data}]),
    )
    assert answer.status_code == 201
    view = await comms.get_conversation(db, chat_desk.agent, uuid.UUID(answer.json()["conversation_id"]))
    assert [(a.filename, a.size) for a in view.messages[0].attachments] == [("box.jpg", 11)]


async def test_an_agents_reply_is_posted_to_the_chat_endpoint_signed_with_retries(client, db, chat_desk):
    first = await post(client, chat_desk, payload(chat_desk))
    conversation_id = uuid.UUID(first.json()["conversation_id"])

    async def flaky(request, count):
        return (503, {}) if count == 1 else (200, {})

    chat_desk.receiver.respond = flaky
    result = await outbound.send_reply(
        db,
        chat_desk.agent,
        conversation_id,
        outbound.ReplyRequest(text="It ships today."),
        inbound_domain=None,
    )
    assert result.message.channel.value == "chat"
    async with httpx.AsyncClient() as http:
        await sending.deliver_due(db, policy_for(1), chat_desk.scope, http=http)
    assert [r.status for r in chat_desk.receiver.received] == [503, 200]
    posted = chat_desk.receiver.received[-1]
    assert chat.signature_matches(chat_desk.secret, posted.body, posted.headers["x-orderdesk-signature"])
    assert posted.payload["conversation_id"] == "chat-1" and posted.payload["text"] == "It ships today."
    async with db.transaction(chat_desk.scope) as session:
        stored = await session.get(Message, (chat_desk.tenant.id, result.message.id))
    assert stored.delivery_status.value == "sent" and stored.send_attempts == 2


async def test_a_chat_endpoint_that_refuses_fails_the_reply_visibly(client, db, chat_desk):
    first = await post(client, chat_desk, payload(chat_desk))

    async def refuse(request, count):
        return 400, {}

    chat_desk.receiver.respond = refuse
    result = await outbound.send_reply(
        db,
        chat_desk.agent,
        uuid.UUID(first.json()["conversation_id"]),
        outbound.ReplyRequest(text="Hello"),
        inbound_domain=None,
    )
    async with httpx.AsyncClient() as http:
        await sending.deliver_due(db, policy_for(1), chat_desk.scope, http=http)
    async with db.transaction(chat_desk.scope) as session:
        stored = await session.get(Message, (chat_desk.tenant.id, result.message.id))
    assert stored.delivery_status.value == "failed" and "400" in stored.last_error
    assert len(chat_desk.receiver.received) == 1
