"""The inventory API: warehouses, stock levels and feeds, the ledger, allocations."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.inventory import services
from orderdesk.inventory.schemas import (
    AdjustmentIn,
    MovementView,
    OrderAllocationView,
    OverrideIn,
    StockLevelView,
    StockUpdateIn,
    StockUpdateResult,
    WarehouseIn,
    WarehousePatch,
    WarehouseView,
)
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses


class WarehouseApiController(Controller):
    path = "/api/v1/warehouses"
    tags = ["Inventory"]
    guards = [requires_actor]

    @get(
        "/",
        summary="The tenant's warehouses (fulfillment centers)",
        responses=problem_responses(400, 401, 404),
    )
    async def list_warehouses(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[WarehouseView]:
        rows = await services.list_warehouses(db, actor, tenant_id)
        return [WarehouseView.model_validate(w) for w in rows]

    @post(
        "/",
        summary="Add a warehouse",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def create_warehouse(
        self, db: DB, actor: CurrentActor, data: JSONBody[WarehouseIn]
    ) -> WarehouseView:
        return WarehouseView.model_validate(await services.create_warehouse(db, actor, data))

    @get("/{warehouse_id:uuid}", summary="One warehouse", responses=problem_responses(400, 401, 404))
    async def get_warehouse(self, db: DB, actor: CurrentActor, warehouse_id: FromPath[UUID]) -> WarehouseView:
        return WarehouseView.model_validate(await services.get_warehouse(db, actor, warehouse_id))

    @patch(
        "/{warehouse_id:uuid}",
        summary="Change a warehouse (active=false takes it out of routing)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def update_warehouse(
        self, db: DB, actor: CurrentActor, warehouse_id: FromPath[UUID], data: JSONBody[WarehousePatch]
    ) -> WarehouseView:
        return WarehouseView.model_validate(await services.update_warehouse(db, actor, warehouse_id, data))

    @delete(
        "/{warehouse_id:uuid}",
        summary="Remove a warehouse that never held stock",
        status_code=204,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def delete_warehouse(self, db: DB, actor: CurrentActor, warehouse_id: FromPath[UUID]) -> None:
        await services.delete_warehouse(db, actor, warehouse_id)

    @get(
        "/{warehouse_id:uuid}/stock",
        summary="Stock levels in one warehouse",
        responses=problem_responses(400, 401, 404),
    )
    async def list_stock(
        self,
        db: DB,
        actor: CurrentActor,
        warehouse_id: FromPath[UUID],
        sku: FromQuery[str | None] = None,
        low: FromQuery[bool] = False,
    ) -> list[StockLevelView]:
        return await services.list_stock(db, actor, warehouse_id=warehouse_id, sku=sku, low_only=low)

    @post(
        "/{warehouse_id:uuid}/stock",
        summary="Report stock levels or changes (idempotent by event_id)",
        description="Each update sets `on_hand` (a count) or applies `delta` (units in or out), "
        "and may set a low-stock threshold. A retry with the same `event_id` is applied once.",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def update_stock(
        self, db: DB, actor: CurrentActor, warehouse_id: FromPath[UUID], data: JSONBody[StockUpdateIn]
    ) -> StockUpdateResult:
        return await services.update_stock(db, actor, warehouse_id, data)

    @post(
        "/{warehouse_id:uuid}/stock.csv",
        summary="Report stock levels as a CSV file (idempotent by event_id)",
        description="The CSV file itself is the request body (`Content-Type: text/csv`, UTF-8): a header "
        "`sku,on_hand` or `sku,delta` (optionally `low_stock_threshold`), one row per SKU. Good rows are "
        "applied; every other row is reported with its line number.",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def upload_stock_csv(
        self,
        request: Request,
        db: DB,
        actor: CurrentActor,
        warehouse_id: FromPath[UUID],
        event_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
        reason: Annotated[str | None, QueryParameter(max_length=500)] = None,
    ) -> StockUpdateResult:
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed([FieldError("file", "must be UTF-8 text")]) from exc
        return await services.upload_stock_csv(
            db, actor, warehouse_id, text, event_id=event_id, reason=reason
        )

    @post(
        "/{warehouse_id:uuid}/stock/{sku:str}/adjustments",
        summary="Adjust stock by hand, with a reason",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def adjust_stock(
        self,
        db: DB,
        actor: CurrentActor,
        warehouse_id: FromPath[UUID],
        sku: FromPath[str],
        data: JSONBody[AdjustmentIn],
    ) -> StockLevelView:
        return await services.adjust_stock(db, actor, warehouse_id, sku, data.delta, data.reason)

    @get(
        "/{warehouse_id:uuid}/stock/{sku:str}/movements",
        summary="The stock ledger of one SKU, newest first",
        responses=problem_responses(400, 401, 404, 422),
    )
    async def list_movements(
        self,
        db: DB,
        actor: CurrentActor,
        warehouse_id: FromPath[UUID],
        sku: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
    ) -> list[MovementView]:
        return await services.list_movements(db, actor, warehouse_id, sku, limit)


class StockApiController(Controller):
    path = "/api/v1/stock"
    tags = ["Inventory"]
    guards = [requires_actor]

    @get(
        "/",
        summary="Stock levels across warehouses (low=true: at or under their threshold)",
        responses=problem_responses(400, 401, 404),
    )
    async def list_stock(
        self,
        db: DB,
        actor: CurrentActor,
        tenant_id: FromQuery[UUID | None] = None,
        sku: FromQuery[str | None] = None,
        low: FromQuery[bool] = False,
    ) -> list[StockLevelView]:
        return await services.list_stock(db, actor, tenant_id=tenant_id, sku=sku, low_only=low)


class OrderAllocationController(Controller):
    path = "/api/v1/orders/{order_id:uuid}/allocation"
    tags = ["Inventory"]
    guards = [requires_actor]

    @get(
        "/",
        summary="Where the order's units are reserved, shipped from, or waiting",
        responses=problem_responses(400, 401, 404),
    )
    async def get_allocation(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]
    ) -> OrderAllocationView:
        return await services.get_order_allocation(db, actor, order_id)

    @post(
        "/retry",
        summary="Route a verified order, or its backorders, again",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def retry(self, db: DB, actor: CurrentActor, order_id: FromPath[UUID]) -> OrderAllocationView:
        return await services.retry_allocation(db, actor, order_id)

    @post(
        "/override",
        summary="Ship from another warehouse, with a reason (staff)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def override(
        self, db: DB, actor: CurrentActor, order_id: FromPath[UUID], data: JSONBody[OverrideIn]
    ) -> OrderAllocationView:
        return await services.override_warehouse(
            db, actor, order_id, data.warehouse_id, data.reason, data.line_nos
        )
