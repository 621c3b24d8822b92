"""Conversations over HTTP: the inbound-email endpoint, the read API, and the console's messages panel."""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus
from typing import Any
from urllib.parse import quote
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from orderdesk.comms import inbound, services
from orderdesk.comms.models import MAX_MESSAGE_BYTES, Direction, MessageChannel
from orderdesk.comms.schemas import ConversationView, InboundEmailReceipt
from orderdesk.console.pages import form_text, page
from orderdesk.core.errors import (
    AuthenticationFailed,
    DomainError,
    FieldError,
    NotFound,
    TooLarge,
    ValidationFailed,
)
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.errors import PROBLEM_JSON, problem
from orderdesk.web.guards import requires_actor, requires_staff
from orderdesk.web.openapi import problem_responses

log = structlog.get_logger("orderdesk.comms")


def _download(meta, data: bytes) -> Response[bytes]:
    # Always a download, never rendered by the browser: a customer's HTML or SVG file
    # must not run in our origin.
    # RFC 6266: an ASCII fallback plus the real name percent-encoded as UTF-8.
    name = "".join(ch for ch in meta.filename if ch.isprintable()) or "attachment"
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in name)
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": disposition,
            "X-Content-Type-Options": "nosniff",
            "X-Original-Content-Type": meta.content_type,
        },
    )


class CommsApiController(Controller):
    path = "/api/v1"
    tags = ["Conversations"]
    guards = [requires_actor]

    @get(
        "/orders/{order_id:uuid}/conversations",
        summary="The conversations about an order, with their messages",
        description="Oldest first. Internal notes are shown to operations staff only.",
        responses=problem_responses(400, 401, 404),
    )
    async def order_conversations(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]
    ) -> list[ConversationView]:
        return await services.list_order_conversations(db, actor, order_id)

    @get(
        "/conversations/{conversation_id:uuid}",
        summary="One conversation with its messages",
        responses=problem_responses(400, 401, 404),
    )
    async def conversation(
        self, db: DB, actor: CurrentActor, conversation_id: FromPath[UUID]
    ) -> ConversationView:
        return await services.get_conversation(db, actor, conversation_id)

    @get(
        "/attachments/{attachment_id:uuid}",
        summary="An attachment's bytes (always as a download)",
        media_type="application/octet-stream",
        responses=problem_responses(400, 401, 404),
    )
    async def attachment(self, db: DB, actor: CurrentActor, attachment_id: FromPath[UUID]) -> Response[bytes]:
        meta, data = await services.get_attachment(db, actor, attachment_id)
        return _download(meta, data)


class ConsoleCommsController(Controller):
    path = "/console"
    guards = [requires_staff]
    include_in_schema = False

    @get("/orders/{order_id:uuid}/messages")
    async def order_messages(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> Template:
        conversations = await services.list_order_conversations(db, actor, order_id)
        return page("comms/_messages.html", actor, conversations=conversations, order_id=order_id)

    @get("/conversations/{conversation_id:uuid}")
    async def conversation(self, db: DB, actor: CurrentActor, conversation_id: FromPath[UUID]) -> Template:
        conversation = await services.get_conversation(db, actor, conversation_id)
        return page(
            "comms/_messages.html", actor, conversations=[conversation], order_id=conversation.order_id
        )

    @post("/conversations/{conversation_id:uuid}/notes")
    async def add_note(
        self, request: Request, db: DB, actor: CurrentActor, conversation_id: FromPath[UUID]
    ) -> Template:
        text = form_text(await request.form(), "text").strip()
        if not text:
            await services.get_conversation(db, actor, conversation_id)  # a foreign id answers 404 first
            raise ValidationFailed([FieldError("text", "write the note first")])
        await services.append_message(
            db,
            actor,
            conversation_id,
            services.MessageDraft(
                direction=Direction.OUTBOUND,
                channel=MessageChannel.NOTE,
                created_by=actor.display_name,
                sender_name=actor.display_name,
                text_body=text[:10000],
                summary=text[:5000],
            ),
        )
        conversation = await services.get_conversation(db, actor, conversation_id)
        return page(
            "comms/_messages.html",
            actor,
            conversations=[conversation],
            order_id=conversation.order_id,
            notice="Note added.",
        )

    @get("/attachments/{attachment_id:uuid}")
    async def attachment(self, db: DB, actor: CurrentActor, attachment_id: FromPath[UUID]) -> Response[bytes]:
        meta, data = await services.get_attachment(db, actor, attachment_id)
        return _download(meta, data)


# ---------------------------------------------------------------- inbound email over HTTP

_INBOUND_STATUS: dict[type[DomainError], int] = {
    AuthenticationFailed: 401,
    NotFound: 404,
    TooLarge: 413,
    ValidationFailed: 400,
}


def _inbound_problem(request: Request, exc: Exception) -> Response:
    """Inbound-parse services are no browsers: every failure answers problem+json."""
    extra: dict[str, Any] = {}
    if isinstance(exc, DomainError):
        status = next((code for kind, code in _INBOUND_STATUS.items() if isinstance(exc, kind)), 400)
        if isinstance(exc, ValidationFailed):
            extra = {
                "type_": "/problems/validation",
                "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
            }
        body = problem(status, exc.detail, **extra)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail or HTTPStatus(status).phrase
        if status == 413:
            detail = f"the message is larger than the limit of {MAX_MESSAGE_BYTES} bytes"
        body = problem(status, detail)
    else:
        log.exception("inbound_email_failed", path=request.url.path)
        status, body = 500, problem(500, "Something went wrong on our side; it has been logged. Retry later.")
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def _presented_secret(request: Request) -> str | None:
    """The inbound secret: `X-Inbound-Secret`, or the password of HTTP Basic credentials
    (inbound-parse services put credentials in the webhook URL)."""
    if secret := request.headers.get("x-inbound-secret"):
        return secret.strip()
    scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "basic" and credential:
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class InboundEmailController(Controller):
    path = "/hooks/inbound-email"
    tags = ["Webhooks"]
    exception_handlers = {
        DomainError: _inbound_problem,
        HTTPException: _inbound_problem,
        Exception: _inbound_problem,
    }

    @post(
        "/",
        summary="Receive one raw email (RFC 5322) for a tenant's inbound address",
        description=(
            "The shape inbound-parse services post: the raw message as the body (any content type, "
            "e.g. `message/rfc822`), the envelope recipient in `recipient`, and the tenant's inbound "
            "secret in `X-Inbound-Secret` or as the password of HTTP Basic credentials. 201 for a "
            "stored message, 200 when the same message (Message-ID) was stored before. Unknown "
            f"recipient: 404; wrong secret: 401; over {MAX_MESSAGE_BYTES} bytes: 413."
        ),
        status_code=201,
        request_max_body_size=MAX_MESSAGE_BYTES + 1,
        responses=problem_responses(400, 401, 404, 413),
    )
    async def receive(
        self,
        request: Request,
        db: DB,
        recipient: FromQuery[str] = "",
    ) -> Response[InboundEmailReceipt]:
        raw = await request.body()
        errors = []
        if not recipient.strip():
            errors.append(FieldError("recipient", "give the envelope recipient, e.g. ?recipient=acme@…"))
        if not raw.strip():
            errors.append(FieldError("body", "the raw message is empty"))
        if errors:
            raise ValidationFailed(errors, "The request could not be read")
        settings = request.app.state.settings
        result = await inbound.receive_email(
            db,
            raw,
            recipient=recipient,
            domains=settings.inbound_email_domains,
            secret=_presented_secret(request),
            require_secret=True,
            via="http",
        )
        receipt = InboundEmailReceipt(
            outcome="duplicate" if result.duplicate else "stored",
            message_id=result.message_id,
            conversation_id=result.conversation_id,
            placement=result.placement,
            note=result.note,
        )
        return Response(receipt, status_code=200 if result.duplicate else 201)
