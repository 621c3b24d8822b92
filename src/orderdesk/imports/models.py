"""Bulk CSV imports of orders: one row per import, and every rejected row kept for the report."""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.models import pg_enum


class ImportStatus(enum.StrEnum):
    PENDING = "pending"  # created, waiting for its file
    RUNNING = "running"  # rows are being read and orders created
    DONE = "done"  # every row read; see the counts and the error report
    FAILED = "failed"  # the file itself could not be read (encoding, header); nothing partial
    # Its process stopped mid-file (killed, redeployed): the heartbeat went quiet while
    # running. What was committed stays; the same file uploaded again finishes the job.
    INTERRUPTED = "interrupted"


class OrderImport(Base):
    __tablename__ = "order_imports"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    status: Mapped[ImportStatus] = mapped_column(pg_enum(ImportStatus, "import_status"))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    # Refreshed by the process running the import while it runs (imports/heartbeat.py).
    heartbeat_at: Mapped[dt.datetime | None]
    encoding: Mapped[str | None] = mapped_column(String(20))
    delimiter: Mapped[str | None] = mapped_column(String(1))
    bytes_total: Mapped[int | None] = mapped_column(Integer)
    bytes_read: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rows_read: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rows_rejected: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    orders_created: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    orders_existing: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    orders_rejected: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failure: Mapped[str | None] = mapped_column(Text)


class OrderImportError(Base):
    """One problem with one row (row number as in the file, header is row 1)."""

    __tablename__ = "order_import_errors"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    import_id: Mapped[UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer)
    order_ref: Mapped[str | None] = mapped_column(String(100))
    column: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(String(1000))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "import_id"], ["order_imports.tenant_id", "order_imports.id"], ondelete="CASCADE"
        ),
    )
