"""The invoices API: issue an order's invoice, list and read documents, HTML and PDF."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, MediaType, Response, get, post
from litestar.params import FromPath

from orderdesk.invoices import services
from orderdesk.invoices.schemas import InvoiceView
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses


class OrderInvoiceController(Controller):
    path = "/api/v1/orders/{order_id:uuid}"
    tags = ["Invoices"]
    guards = [requires_actor]

    @get(
        "/invoices",
        summary="The order's invoice and credit notes",
        responses=problem_responses(400, 401, 404),
    )
    async def list_invoices(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> list[InvoiceView]:
        return await services.list_invoices(db, actor, order_id)

    @post(
        "/invoice",
        summary="Issue the order's invoice now",
        description="201 with the new invoice; 200 with the existing one if it was already issued.",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def issue_invoice(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]
    ) -> Response[InvoiceView]:
        result = await services.issue_invoice(db, actor, order_id)
        return Response(result.invoice, status_code=201 if result.created else 200)


class InvoiceController(Controller):
    path = "/api/v1/invoices/{invoice_id:uuid}"
    tags = ["Invoices"]
    guards = [requires_actor]

    @get("/", summary="One invoice or credit note", responses=problem_responses(400, 401, 404))
    async def get_invoice(self, db: DB, actor: CurrentActor, invoice_id: FromPath[UUID]) -> InvoiceView:
        return await services.get_invoice(db, actor, invoice_id)

    @get(
        "/html",
        summary="The document as HTML",
        media_type=MediaType.HTML,
        responses=problem_responses(400, 401, 404),
    )
    async def html(self, db: DB, actor: CurrentActor, invoice_id: FromPath[UUID]) -> Response[str]:
        return Response(await services.rendered(db, actor, invoice_id, "html"), media_type=MediaType.HTML)

    @get(
        "/pdf",
        summary="The document as PDF",
        media_type="application/pdf",
        responses=problem_responses(400, 401, 404),
    )
    async def pdf(self, db: DB, actor: CurrentActor, invoice_id: FromPath[UUID]) -> Response[bytes]:
        body = await services.rendered(db, actor, invoice_id, "pdf")
        return Response(
            body,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{invoice_id}.pdf"'},
        )
