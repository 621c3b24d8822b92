"""CSV order imports over HTTP: the API (create, upload, progress, error report) and the
console page that drives it from a browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, post, put
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream, Template
from pydantic import ValidationError

from orderdesk.core.errors import FieldError, ValidationFailed
from orderdesk.imports import services
from orderdesk.imports.models import ImportStatus
from orderdesk.imports.schemas import ImportCreate, ImportReport, ImportView
from orderdesk.tenants import services as tenant_services
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.errors import PROBLEM_JSON, problem
from orderdesk.web.guards import requires_actor, requires_staff
from orderdesk.web.openapi import ProblemDetails, problem_responses

# The app refuses JSON bodies over 1 MiB; a file upload may be this large ("2 GiB":
# the byte counters of order_imports are 32-bit integers).
MAX_UPLOAD_BYTES = services.MAX_FILE_BYTES
UPLOAD_MEDIA_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/tab-separated-values",
        "application/csv",
        "application/octet-stream",
        # What browsers on Windows call a .csv file.
        "application/vnd.ms-excel",
    }
)
UPLOAD_DESCRIPTION = (
    "The CSV file itself is the request body (`Content-Type: text/csv`), streamed: it is read and "
    "imported as it arrives, in constant memory, up to 2 GiB. Answers the import's report; an "
    "unreadable file (empty, header only, missing columns) answers 422 with the report under `import`."
)


def _problem_spec(status: int, title: str, description: str, detail: str, **extra) -> ResponseSpec:
    example = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return ResponseSpec(
        data_container=ProblemDetails,
        description=description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
        examples=[Example(summary=description, value=example)],
    )


# What an upload can answer besides the usual: the file itself unreadable (422, with the
# import's report), already uploaded (409), too large (413), sent as a form (415).
UPLOAD_RESPONSES = {
    **problem_responses(400, 401, 403, 404),
    409: _problem_spec(
        409, "Conflict", "The import already had its file",
        "This import is done and has had its file; create a new import for another file",
    ),
    413: _problem_spec(
        413, "Request Entity Too Large", "Over the upload limit",
        "The file is larger than the upload limit of 2 GiB",
    ),
    415: _problem_spec(
        415, "Unsupported Media Type", "Not a CSV body",
        "Send the CSV file itself as the request body with Content-Type: text/csv (not a form)",
    ),
    422: _problem_spec(
        422, "Unprocessable Content", "The file could not be read; `import` is the report",
        "Missing required columns: currency, quantity.",
        type="/problems/import-failed",
        **{"import": {"id": "01939a4e-5b1c-7d2e-8f3a-1b2c3d4e5f60", "status": "failed", "orders_created": 0}},
    ),
}  # fmt: skip


def _check_media_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type not in UPLOAD_MEDIA_TYPES:
        raise ClientException(
            status_code=415,
            detail="Send the CSV file itself as the request body with Content-Type: text/csv (not a form)",
        )


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except RequestEntityTooLarge as exc:
        raise services.UploadTooLarge("The file is larger than the upload limit of 2 GiB") from exc


async def _run(request: Request, db: DB, actor: CurrentActor, import_id: UUID, status_code: int) -> Response:
    _check_media_type(request)
    try:
        report = await services.run_import(
            db, actor, import_id, _body(request), bytes_total=request.content_length
        )
    except services.UploadTooLarge as exc:
        raise RequestEntityTooLarge(detail=exc.detail) from exc
    if report.status is ImportStatus.FAILED:
        body = problem(
            422,
            report.failure or "The file could not be imported",
            type_="/problems/import-failed",
            **{"import": report.model_dump(mode="json")},
        )
        return Response(body, status_code=422, media_type=PROBLEM_JSON)
    return Response(report, status_code=status_code)


def _report_filename(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "import")[:100] + "-errors.csv"


class ImportApiController(Controller):
    path = "/api/v1/orders/imports"
    tags = ["Order imports"]
    guards = [requires_actor]

    @post(
        "/",
        summary="Create a CSV import",
        description="Then PUT the file to `/api/v1/orders/imports/{id}/file`. See docs/csv-import.md.",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def create_import(self, db: DB, actor: CurrentActor, data: JSONBody[ImportCreate]) -> ImportView:
        return await services.create_import(db, actor, data)

    @get("/", summary="Recent imports, newest first", responses=problem_responses(400, 401, 404))
    async def list_imports(
        self,
        db: DB,
        actor: CurrentActor,
        tenant_id: FromQuery[UUID | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> list[ImportView]:
        return await services.list_imports(db, actor, tenant_id=tenant_id, limit=limit)

    @get(
        "/{import_id:uuid}",
        summary="One import: status, counts and progress (bytes_read of bytes_total)",
        responses=problem_responses(400, 401, 404),
    )
    async def get_import(self, db: DB, actor: CurrentActor, import_id: FromPath[UUID]) -> ImportView:
        return await services.get_import(db, actor, import_id)

    @put(
        "/{import_id:uuid}/file",
        summary="Upload the import's file and import it",
        description=UPLOAD_DESCRIPTION,
        request_max_body_size=MAX_UPLOAD_BYTES,
        status_code=200,
        responses=UPLOAD_RESPONSES,
    )
    async def upload_file(
        self, request: Request, db: DB, actor: CurrentActor, import_id: FromPath[UUID]
    ) -> Response[ImportReport]:
        return await _run(request, db, actor, import_id, 200)

    @post(
        "/csv",
        summary="Create an import and upload its file in one request",
        description=UPLOAD_DESCRIPTION,
        request_max_body_size=MAX_UPLOAD_BYTES,
        status_code=201,
        responses={k: v for k, v in UPLOAD_RESPONSES.items() if k != 409},
    )
    async def import_csv(
        self,
        request: Request,
        db: DB,
        actor: CurrentActor,
        filename: Annotated[str, QueryParameter(min_length=1, max_length=255)],
        tenant_id: FromQuery[UUID | None] = None,
        encoding: FromQuery[str | None] = None,
        delimiter: FromQuery[str | None] = None,
    ) -> Response[ImportReport]:
        _check_media_type(request)
        try:
            data = ImportCreate(
                filename=filename, tenant_id=tenant_id, encoding=encoding, delimiter=delimiter
            )
        except ValidationError as exc:
            raise ValidationFailed(
                [FieldError(str(e["loc"][0]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
            ) from exc
        created = await services.create_import(db, actor, data)
        return await _run(request, db, actor, created.id, 201)

    @get(
        "/{import_id:uuid}/errors.csv",
        summary="The import's error report as CSV",
        description="Columns row, external_ref, column, message; rows numbered as in the file (header = 1).",
        media_type="text/csv",
        responses=problem_responses(400, 401, 404),
    )
    async def error_report(self, db: DB, actor: CurrentActor, import_id: FromPath[UUID]) -> Stream:
        filename, lines = await services.error_report(db, actor, import_id)
        return Stream(
            lines,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_report_filename(filename)}"'},
        )


# Problems listed on the page once an import ends; the downloadable report has them all.
PROBLEMS_SHOWN = 20


class ConsoleImportController(Controller):
    path = "/console/imports"
    guards = [requires_staff]
    include_in_schema = False

    @get("/")
    async def page(self, db: DB, actor: CurrentActor) -> Template:
        tenants = await tenant_services.list_tenants(db, actor)
        imports = await services.list_imports(db, actor)
        return Template(
            "imports/console.html",
            context={
                "actor": actor,
                "tenants": tenants,
                "imports": imports,
                "tenant_names": {t.id: t.name for t in tenants},
            },
        )

    @get("/{import_id:uuid}/progress")
    async def progress(self, db: DB, actor: CurrentActor, import_id: FromPath[UUID]) -> Template:
        job = await services.get_import(db, actor, import_id)
        if job.status not in (ImportStatus.PENDING, ImportStatus.RUNNING):
            # Finished: the report's first problems are listed under the counts.
            job = await services.get_report(db, actor, import_id)
        context: dict = {"actor": actor, "job": job, "problems_shown": PROBLEMS_SHOWN}
        if job.status not in (ImportStatus.PENDING, ImportStatus.RUNNING):
            # The finished import joins the list below the form.
            tenants = await tenant_services.list_tenants(db, actor)
            context["imports"] = await services.list_imports(db, actor)
            context["tenant_names"] = {t.id: t.name for t in tenants}
        return Template("imports/_progress.html", context=context)


ROUTE_HANDLERS = [ImportApiController, ConsoleImportController]
