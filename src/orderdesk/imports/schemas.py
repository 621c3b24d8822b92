"""API shapes for CSV order imports."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from pydantic import Field, field_validator

from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.imports.models import ImportStatus
from orderdesk.imports.reader import normalise_delimiter, normalise_encoding


class ImportCreate(InputSchema):
    filename: str = Field(min_length=1, max_length=255, examples=["orders-2026-11-26.csv"])
    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")
    encoding: str | None = Field(
        default=None,
        description="utf-8, cp1252, latin-1, iso-8859-15 or utf-16; detected when left out",
        examples=["cp1252"],
    )
    delimiter: str | None = Field(
        default=None, description="comma, semicolon or tab (or the character); detected when left out"
    )

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"filename": "orders-2026-11-26.csv", "delimiter": "semicolon"}]},
    }

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        return normalise_encoding(value) if value else None

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        # Before trimming: a tab is whitespace.
        return normalise_delimiter(value) if value else None


class ImportView(OutputSchema):
    id: UUID
    tenant_id: UUID
    filename: str
    status: ImportStatus
    created_by: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None = Field(
        description="While running, refreshed every 10 s by the process importing the file; "
        "a running import silent for over a minute is marked interrupted"
    )
    encoding: str | None = Field(description="The encoding used (utf-8-sig: UTF-8 with a byte order mark)")
    delimiter: str | None
    bytes_total: int | None = Field(description="The upload's Content-Length, when it announced one")
    bytes_read: int
    rows_read: int = Field(description="Order rows read, the header and blank rows not counted")
    rows_rejected: int = Field(description="Rows not imported: rows of refused orders and unreadable rows")
    orders_created: int
    orders_existing: int = Field(description="Orders whose external_ref already existed; left as they are")
    orders_rejected: int
    problems: int = Field(description="Entries in the error report (warnings about the header included)")
    failure: str | None = Field(
        description="Why the file could not be read, why reading stopped early, or (interrupted) "
        "that the importing process ended and the file should be uploaded again"
    )
    errors_url: str


class ImportProblemView(OutputSchema):
    row: int = Field(description="Row number in the file; the header is row 1")
    external_ref: str | None
    column: str | None
    message: str


class ImportReport(ImportView):
    first_problems: list[ImportProblemView] = Field(description="The first 100 entries of the error report")
