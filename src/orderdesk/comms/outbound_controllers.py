"""HTTP side of outbound communication: the JSON API, the chat webhook and the console pages."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Response, Template

from orderdesk.comms import chat, outbound
from orderdesk.comms import services as comms
from orderdesk.comms.outbound_schemas import (
    ChatReceiptView,
    MacroCreate,
    MacroUpdate,
    MacroView,
    OutboundSettingsUpdate,
    OutboundSettingsView,
    ReplyCreate,
    ReplyView,
    TemplateCreate,
    TemplatePreview,
    TemplateUpdate,
    TemplateView,
)
from orderdesk.core.errors import Conflict, DomainError, FieldError, ValidationFailed
from orderdesk.orders.services import resolve_tenant
from orderdesk.shops.controllers import _webhook_problem
from orderdesk.tenants.services import get_tenant
from orderdesk.web.deps import DB, AppSettings, CurrentActor
from orderdesk.web.guards import requires_actor, requires_staff
from orderdesk.web.openapi import problem_responses


def _macro_view(row) -> MacroView:
    return MacroView(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        insert_text=row.insert_text,
        set_outcome=row.set_outcome.value if row.set_outcome else None,
        add_tag=row.add_tag,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _reply_view(result: outbound.ReplyResult) -> ReplyView:
    m = result.message
    return ReplyView(
        message_id=m.id,
        conversation_id=m.conversation_id,
        channel=m.channel.value,
        subject=m.subject,
        text_body=m.text_body,
        provider_message_id=m.provider_message_id,
        in_reply_to=m.in_reply_to,
        delivery_status=m.delivery_status.value if m.delivery_status else None,
        work_item_id=result.work_item_id,
        outcome_set=result.outcome_set.value if result.outcome_set else None,
        tag_added=result.tag_added,
    )


def chat_webhook_path(tenant_id: UUID) -> str:
    return f"/hooks/chat/{tenant_id}"


class EmailTemplateController(Controller):
    path = "/api/v1/email-templates"
    tags = ["Communication"]
    guards = [requires_actor]

    @post(
        "/",
        summary="Create an email template (checked against a real order)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def create(self, db: DB, actor: CurrentActor, data: JSONBody[TemplateCreate]) -> TemplateView:
        tenant_id = resolve_tenant(actor, data.tenant_id)
        row = await outbound.create_template(
            db,
            actor,
            tenant_id,
            outbound.TemplateFields(name=data.name, subject=data.subject, body=data.body),
        )
        return TemplateView.model_validate(row)

    @get("/", summary="The tenant's email templates", responses=problem_responses(400, 401, 403, 404, 422))
    async def list_templates(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[TemplateView]:
        rows = await outbound.list_templates(db, actor, resolve_tenant(actor, tenant_id))
        return [TemplateView.model_validate(r) for r in rows]

    @get("/{template_id:uuid}", summary="One template", responses=problem_responses(400, 401, 403, 404))
    async def get_template(self, db: DB, actor: CurrentActor, template_id: FromPath[UUID]) -> TemplateView:
        return TemplateView.model_validate(await outbound.get_template(db, actor, template_id))

    @patch(
        "/{template_id:uuid}",
        summary="Change a template",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def update(
        self, db: DB, actor: CurrentActor, template_id: FromPath[UUID], data: JSONBody[TemplateUpdate]
    ) -> TemplateView:
        row = await outbound.update_template(
            db,
            actor,
            template_id,
            outbound.TemplateFields(name=data.name, subject=data.subject, body=data.body),
        )
        return TemplateView.model_validate(row)

    @delete(
        "/{template_id:uuid}",
        summary="Remove a template",
        status_code=204,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def remove(self, db: DB, actor: CurrentActor, template_id: FromPath[UUID]) -> None:
        await outbound.delete_template(db, actor, template_id)

    @get(
        "/{template_id:uuid}/preview",
        summary="Render a template with a real order of its tenant (the newest unless order_id names one)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def preview(
        self,
        db: DB,
        actor: CurrentActor,
        template_id: FromPath[UUID],
        order_id: FromQuery[UUID | None] = None,
    ) -> TemplatePreview:
        found = await outbound.preview_template(db, actor, template_id, order_id)
        return TemplatePreview(
            subject=found.subject, body=found.body, order_id=found.order_id, order_number=found.order_number
        )


class MacroController(Controller):
    path = "/api/v1/macros"
    tags = ["Communication"]
    guards = [requires_actor]

    @post("/", summary="Create an agent macro", responses=problem_responses(400, 401, 403, 404, 422))
    async def create(self, db: DB, actor: CurrentActor, data: JSONBody[MacroCreate]) -> MacroView:
        tenant_id = resolve_tenant(actor, data.tenant_id)
        row = await outbound.create_macro(
            db,
            actor,
            tenant_id,
            outbound.MacroFields(
                name=data.name,
                insert_text=data.insert_text,
                set_outcome=data.set_outcome,
                add_tag=data.add_tag,
            ),
        )
        return _macro_view(row)

    @get("/", summary="The tenant's macros", responses=problem_responses(400, 401, 403, 404, 422))
    async def list_macros(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[MacroView]:
        return [
            _macro_view(r) for r in await outbound.list_macros(db, actor, resolve_tenant(actor, tenant_id))
        ]

    @get("/{macro_id:uuid}", summary="One macro", responses=problem_responses(400, 401, 403, 404))
    async def get_macro(self, db: DB, actor: CurrentActor, macro_id: FromPath[UUID]) -> MacroView:
        return _macro_view(await outbound.get_macro(db, actor, macro_id))

    @patch("/{macro_id:uuid}", summary="Change a macro", responses=problem_responses(400, 401, 403, 404, 422))
    async def update(
        self, db: DB, actor: CurrentActor, macro_id: FromPath[UUID], data: JSONBody[MacroUpdate]
    ) -> MacroView:
        row = await outbound.update_macro(
            db,
            actor,
            macro_id,
            outbound.MacroFields(
                name=data.name,
                insert_text=data.insert_text,
                set_outcome=data.set_outcome,
                add_tag=data.add_tag,
            ),
        )
        return _macro_view(row)

    @delete(
        "/{macro_id:uuid}",
        summary="Remove a macro",
        status_code=204,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def remove(self, db: DB, actor: CurrentActor, macro_id: FromPath[UUID]) -> None:
        await outbound.delete_macro(db, actor, macro_id)


class ConversationReplyController(Controller):
    path = "/api/v1"
    tags = ["Communication"]
    guards = [requires_actor]

    @post(
        "/conversations/{conversation_id:uuid}/replies",
        summary="Reply to a conversation (queued; the worker sends it)",
        description="Free text, a template or a macro. Operations staff only. The answer's `delivery_status` "
        "is `queued`; it becomes `sent` or `failed` (with `last_error`) as the worker proceeds.",
        status_code=202,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def reply(
        self,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        conversation_id: FromPath[UUID],
        data: JSONBody[ReplyCreate],
    ) -> ReplyView:
        result = await outbound.send_reply(
            db,
            actor,
            conversation_id,
            outbound.ReplyRequest(text=data.text, template_id=data.template_id, macro_id=data.macro_id),
            inbound_domain=settings.inbound_domain,
        )
        return _reply_view(result)

    @put(
        "/tenants/{tenant_id:uuid}/comms-outbound",
        summary="Auto-answer template and chat channel of a tenant (a new chat secret is shown once)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def configure(
        self,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        tenant_id: FromPath[UUID],
        data: JSONBody[OutboundSettingsUpdate],
    ) -> OutboundSettingsView:
        row, secret = await outbound.configure_outbound(
            db,
            actor,
            tenant_id,
            outbound.OutboundSettingsFields(
                auto_answer_template_id=data.auto_answer_template_id,
                clear_auto_answer_template=data.clear_auto_answer_template,
                chat_reply_url=data.chat_reply_url,
                rotate_chat_secret=data.rotate_chat_secret,
            ),
            allow_private=settings.webhooks_allow_private,
        )
        return OutboundSettingsView(
            tenant_id=row.tenant_id,
            auto_answer_template_id=row.auto_answer_template_id,
            chat_reply_url=row.chat_reply_url,
            chat_webhook_path=chat_webhook_path(row.tenant_id),
            chat_secret=secret,
        )


class ChatWebhookController(Controller):
    path = "/hooks/chat"
    tags = ["Communication"]
    exception_handlers = {
        DomainError: _webhook_problem,
        HTTPException: _webhook_problem,
        Exception: _webhook_problem,
    }

    @post(
        "/{tenant_id:uuid}",
        summary="Receive a customer's chat message from the tenant's chat platform",
        description=(
            "Authenticated by `X-OrderDesk-Signature`: base64 HMAC-SHA256 of the raw body under the tenant's "
            "chat secret (PUT /api/v1/tenants/{tenant_id}/comms-outbound). No session or API key. "
            "201 for a new message, 200 for a redelivery of the same `message_id` in the same "
            "`conversation_id`."
        ),
        status_code=201,
        responses=problem_responses(400, 401, 413, 422),
        # Attachments travel base64 inside the JSON: room for one at the 10 MiB limit.
        request_max_body_size=chat.MAX_BODY_BYTES,
    )
    async def receive(self, request: Request, db: DB, tenant_id: FromPath[UUID]) -> Response[ChatReceiptView]:
        receipt = await chat.receive_chat_message(
            db, tenant_id, await request.body(), request.headers.get(chat.SIGNATURE_HEADER.lower())
        )
        view = ChatReceiptView(
            conversation_id=receipt.conversation_id,
            message_id=receipt.message_id,
            duplicate=receipt.duplicate,
            placement=receipt.placement,
        )
        return Response(view, status_code=200 if receipt.duplicate else 201)


# ---------------------------------------------------------------- console


def _form_errors(exc: ValidationFailed) -> list[FieldError]:
    return list(exc.errors)


class OutboundConsoleController(Controller):
    """Staff manage a tenant's templates and macros, and reply to conversations."""

    path = "/console"
    guards = [requires_staff]
    include_in_schema = False

    async def _templates_page(self, db, actor, tenant_id: UUID, **extra) -> Template:
        tenant = await get_tenant(db, actor, tenant_id)
        status = extra.pop("status_code", 200)
        return Template(
            "comms/console_templates.html",
            context={
                "actor": actor,
                "tenant": tenant,
                "templates": await outbound.list_templates(db, actor, tenant_id),
                "macros": [_macro_view(m) for m in await outbound.list_macros(db, actor, tenant_id)],
                "errors": [],
                "form": {},
                "macro_form": {},
                "notice": None,
                **extra,
            },
            status_code=status,
        )

    @get("/tenants/{tenant_id:uuid}/templates")
    async def templates_page(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> Template:
        return await self._templates_page(db, actor, tenant_id)

    @post("/tenants/{tenant_id:uuid}/templates")
    async def create_template(
        self, request: Request, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        fields = outbound.TemplateFields(
            name=str(form.get("name", "")),
            subject=str(form.get("subject", "")),
            body=str(form.get("body", "")),
        )
        await get_tenant(db, actor, tenant_id)
        try:
            row = await outbound.create_template(db, actor, tenant_id, fields)
        except ValidationFailed as exc:
            form_values = {"name": fields.name, "subject": fields.subject, "body": fields.body}
            return await self._templates_page(
                db, actor, tenant_id, errors=_form_errors(exc), form=form_values, status_code=422
            )
        return await self._templates_page(db, actor, tenant_id, notice=f"Template “{row.name}” saved.")

    @post("/tenants/{tenant_id:uuid}/macros")
    async def create_macro(
        self, request: Request, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        fields = outbound.MacroFields(
            name=str(form.get("name", "")),
            insert_text=str(form.get("insert_text", "")) or None,
            set_outcome=str(form.get("set_outcome", "")) or None,
            add_tag=str(form.get("add_tag", "")) or None,
        )
        await get_tenant(db, actor, tenant_id)
        try:
            row = await outbound.create_macro(db, actor, tenant_id, fields)
        except ValidationFailed as exc:
            macro_form = {
                "name": fields.name,
                "insert_text": fields.insert_text,
                "set_outcome": fields.set_outcome,
                "add_tag": fields.add_tag,
            }
            return await self._templates_page(
                db, actor, tenant_id, errors=_form_errors(exc), macro_form=macro_form, status_code=422
            )
        return await self._templates_page(db, actor, tenant_id, notice=f"Macro “{row.name}” saved.")

    async def _template_page(self, db, actor, template_id: UUID, **extra) -> Template:
        row = await outbound.get_template(db, actor, template_id)
        tenant = await get_tenant(db, actor, row.tenant_id)
        status = extra.pop("status_code", 200)
        preview = extra.pop("preview", None)
        preview_error = None
        if preview is None:
            try:
                preview = await outbound.preview_template(db, actor, template_id, extra.pop("order_id", None))
            except ValidationFailed as exc:
                preview_error = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        return Template(
            "comms/console_template.html",
            context={
                "actor": actor,
                "tenant": tenant,
                "template": row,
                "preview": preview,
                "preview_error": preview_error,
                "errors": [],
                "form": {"name": row.name, "subject": row.subject, "body": row.body},
                "notice": None,
                **extra,
            },
            status_code=status,
        )

    @get("/templates/{template_id:uuid}")
    async def template_page(
        self,
        db: DB,
        actor: CurrentActor,
        template_id: FromPath[UUID],
        order_id: FromQuery[UUID | None] = None,
    ) -> Template:
        return await self._template_page(db, actor, template_id, order_id=order_id)

    @post("/templates/{template_id:uuid}")
    async def update_template(
        self, request: Request, db: DB, actor: CurrentActor, template_id: FromPath[UUID]
    ) -> Template:
        form = await request.form()
        fields = {k: str(form.get(k, "")) for k in ("name", "subject", "body")}
        try:
            await outbound.update_template(db, actor, template_id, outbound.TemplateFields(**fields))
        except ValidationFailed as exc:
            return await self._template_page(
                db, actor, template_id, errors=_form_errors(exc), form=fields, status_code=422
            )
        return await self._template_page(db, actor, template_id, notice="Template saved.")

    @post("/templates/{template_id:uuid}/delete")
    async def delete_template(self, db: DB, actor: CurrentActor, template_id: FromPath[UUID]) -> Template:
        row = await outbound.get_template(db, actor, template_id)
        await outbound.delete_template(db, actor, template_id)
        return await self._templates_page(db, actor, row.tenant_id, notice=f"Template “{row.name}” removed.")

    @post("/macros/{macro_id:uuid}/delete")
    async def delete_macro(self, db: DB, actor: CurrentActor, macro_id: FromPath[UUID]) -> Template:
        row = await outbound.get_macro(db, actor, macro_id)
        await outbound.delete_macro(db, actor, macro_id)
        return await self._templates_page(db, actor, row.tenant_id, notice=f"Macro “{row.name}” removed.")

    async def _reply_page(self, db, actor, conversation_id: UUID, **extra) -> Template:
        conversation = await comms.get_conversation(db, actor, conversation_id)
        tenant = await get_tenant(db, actor, conversation.tenant_id)
        status = extra.pop("status_code", 200)
        return Template(
            "comms/console_reply.html",
            context={
                "actor": actor,
                "tenant": tenant,
                "conversation": conversation,
                "defaults": await outbound.reply_defaults(db, actor, conversation_id),
                "templates": await outbound.list_templates(db, actor, conversation.tenant_id),
                "macros": await outbound.list_macros(db, actor, conversation.tenant_id),
                "errors": [],
                "text": "",
                "notice": None,
                **extra,
            },
            status_code=status,
        )

    @get("/conversations/{conversation_id:uuid}/reply")
    async def reply_page(self, db: DB, actor: CurrentActor, conversation_id: FromPath[UUID]) -> Template:
        return await self._reply_page(db, actor, conversation_id)

    @post("/conversations/{conversation_id:uuid}/reply")
    async def reply(
        self,
        request: Request,
        db: DB,
        actor: CurrentActor,
        settings: AppSettings,
        conversation_id: FromPath[UUID],
    ) -> Template:
        form = await request.form()
        text_ = str(form.get("text", ""))

        def _uuid(name: str) -> UUID | None:
            raw = str(form.get(name, "") or "")
            try:
                return UUID(raw) if raw else None
            except ValueError:
                raise ValidationFailed([FieldError(name, "not a valid id")]) from None

        try:
            request_ = outbound.ReplyRequest(
                text=text_ or None, template_id=_uuid("template_id"), macro_id=_uuid("macro_id")
            )
            result = await outbound.send_reply(
                db, actor, conversation_id, request_, inbound_domain=settings.inbound_domain
            )
        except ValidationFailed as exc:
            return await self._reply_page(
                db, actor, conversation_id, errors=_form_errors(exc), text=text_, status_code=422
            )
        except Conflict as exc:
            return await self._reply_page(
                db,
                actor,
                conversation_id,
                errors=[FieldError("macro", exc.detail)],
                text=text_,
                status_code=409,
            )
        notice = "Reply queued for sending."
        if result.tag_added:
            notice += f" Tag “{result.tag_added}” added."
        if result.outcome_set:
            notice += f" Work item done ({result.outcome_set.value.replace('_', ' ')})."
        return await self._reply_page(db, actor, conversation_id, notice=notice)

    @get("/conversations/{conversation_id:uuid}/macro-text")
    async def macro_text(
        self,
        db: DB,
        actor: CurrentActor,
        conversation_id: FromPath[UUID],
        macro_id: FromQuery[str] = "",
        text: FromQuery[str] = "",
    ) -> Template:
        """htmx: the reply box's text with the macro's text added at the end."""
        current = text.rstrip()
        inserted = ""
        if macro_id:
            try:
                chosen = UUID(macro_id)
            except ValueError:
                raise ValidationFailed([FieldError("macro_id", "not a valid id")]) from None
            inserted = await outbound.macro_text_for(db, actor, conversation_id, chosen)
        else:
            await comms.get_conversation(db, actor, conversation_id)  # NotFound for foreign ids
        combined = "\n\n".join(part for part in (current, inserted) if part)
        return Template("comms/_reply_text.html", context={"text": combined})


ROUTE_HANDLERS = [
    EmailTemplateController,
    MacroController,
    ConversationReplyController,
    ChatWebhookController,
    OutboundConsoleController,
]
