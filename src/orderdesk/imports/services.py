"""CSV order imports: create one, feed it its file as a stream, read its progress and report.

An import reads its file once, as it arrives. Rows are grouped into orders by
`external_ref`; each group becomes an `OrderCreate` and passes the API's intake
rules (`clean_order`), then every batch of up to 200 orders is stored in one
transaction by `capture_order_batch`, together with the import's counters and
the batch's problems. Each order is all or nothing: a refused order stores no
row, and never holds back the good orders of its batch. A crash leaves what was
committed, and the counters say how far it got. Re-importing a file creates no
duplicates: an order whose `external_ref` exists is counted in `orders_existing`.

Every function takes the acting `Actor` and raises domain errors: NotFound (also
for other tenants' imports), Conflict, PermissionDenied, ValidationFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import structlog
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core import csv_safety
from orderdesk.core.db import Database
from orderdesk.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from orderdesk.core.ids import new_id
from orderdesk.core.validation import has_control_characters
from orderdesk.imports import csv_format, heartbeat
from orderdesk.imports.csv_format import OrderRows, Problem
from orderdesk.imports.models import ImportStatus, OrderImport, OrderImportError
from orderdesk.imports.reader import CsvUpload, FileRefused, ReadingStopped
from orderdesk.imports.schemas import ImportCreate, ImportProblemView, ImportReport, ImportView
from orderdesk.orders.intake import CleanOrder
from orderdesk.orders.models import Channel
from orderdesk.orders.services import capture_order_batch, resolve_tenant

log = structlog.get_logger("orderdesk.imports")

# Orders per transaction: large enough that round trips do not dominate, small
# enough that a batch's rows and objects stay a few megabytes.
BATCH_ORDERS = 200
BATCH_ROWS = 2000
# Orders checked between two turns of the event loop, while the previous batch is stored.
CHECKS_BETWEEN_YIELDS = 2
# The report keeps this many entries; past it, one last entry says how many more there were.
MAX_PROBLEMS = 100_000
REPORT_PAGE = 1000
REPORT_COLUMNS = ("row", "external_ref", "column", "message")
# The largest file an import can count (its byte counters are 32-bit integers): 2 GiB less a byte.
MAX_FILE_BYTES = 2**31 - 1


class UploadTooLarge(DomainError):
    """The body is larger than the upload limit (the web layer answers 413)."""


def errors_url(import_id: UUID) -> str:
    return f"/api/v1/orders/imports/{import_id}/errors.csv"


def _check_can_import(actor: Actor) -> None:
    # The rule capture_order applies to creating any order.
    if actor.kind is ActorKind.CLIENT and actor.client_role is None:
        raise PermissionDenied("Only client users with a role can create orders")


async def create_import(db: Database, actor: Actor, data: ImportCreate) -> ImportView:
    """A new import waiting for its file. Raises NotFound (tenant), PermissionDenied, ValidationFailed."""
    _check_can_import(actor)
    tenant_id = resolve_tenant(actor, data.tenant_id)
    if has_control_characters(data.filename) or "\n" in data.filename or "\r" in data.filename:
        raise ValidationFailed([FieldError("filename", "must not contain control characters")])
    row = OrderImport(
        tenant_id=tenant_id,
        id=new_id(),
        filename=data.filename,
        status=ImportStatus.PENDING,
        created_by=actor.display_name[:200],
        created_at=dt.datetime.now(dt.UTC),
        # What the caller asked for; replaced by what was used once the file is read.
        encoding=data.encoding,
        delimiter=data.delimiter,
        bytes_read=0,
        rows_read=0,
        rows_rejected=0,
        orders_created=0,
        orders_existing=0,
        orders_rejected=0,
    )
    async with db.transaction(actor.scope) as session:
        session.add(row)
    return _to_view(row, 0)


async def _find(session: AsyncSession, actor: Actor, import_id: UUID, *, lock: bool = False) -> OrderImport:
    query = select(OrderImport).where(
        OrderImport.id == import_id, OrderImport.tenant_id.in_(actor.tenant_ids)
    )
    if lock:
        query = query.with_for_update()
    found = await session.scalar(query)
    if found is None:
        raise NotFound("Import")
    await heartbeat.settle_stale(session, [found])
    return found


def _to_view(row: OrderImport, problems: int) -> ImportView:
    fields = {
        name: getattr(row, name) for name in ImportView.model_fields if name not in ("problems", "errors_url")
    }
    return ImportView(**fields, problems=problems, errors_url=errors_url(row.id))


async def _view(session: AsyncSession, row: OrderImport) -> ImportView:
    problems = await session.scalar(
        select(func.count())
        .select_from(OrderImportError)
        .where(OrderImportError.tenant_id == row.tenant_id, OrderImportError.import_id == row.id)
    )
    return _to_view(row, problems)


async def get_import(db: Database, actor: Actor, import_id: UUID) -> ImportView:
    """One import with its counters (progress while it runs). Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        return await _view(session, await _find(session, actor, import_id))


async def get_report(db: Database, actor: Actor, import_id: UUID) -> ImportReport:
    """The import and the first 100 entries of its error report. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        row = await _find(session, actor, import_id)
        view = await _view(session, row)
        first = await session.scalars(
            select(OrderImportError)
            .where(OrderImportError.tenant_id == row.tenant_id, OrderImportError.import_id == row.id)
            .order_by(OrderImportError.seq)
            .limit(100)
        )
        return ImportReport(
            **view.model_dump(),
            first_problems=[
                ImportProblemView(
                    row=e.row_number, external_ref=e.order_ref, column=e.column, message=e.message
                )
                for e in first
            ],
        )


async def list_imports(
    db: Database, actor: Actor, *, tenant_id: UUID | None = None, limit: int = 20
) -> list[ImportView]:
    """The most recent imports the actor reaches, newest first. Raises NotFound (tenant)."""
    tenant_ids = actor.tenant_ids
    if tenant_id is not None:
        if tenant_id not in actor.tenant_ids:
            raise NotFound("Tenant")
        tenant_ids = frozenset({tenant_id})
    async with db.transaction(actor.scope) as session:
        rows = list(
            await session.scalars(
                select(OrderImport)
                .where(OrderImport.tenant_id.in_(tenant_ids))
                .order_by(OrderImport.created_at.desc(), OrderImport.id.desc())
                .limit(limit)
            )
        )
        await heartbeat.settle_stale(session, rows)
        counts = dict(
            (
                await session.execute(
                    select(OrderImportError.import_id, func.count())
                    .where(
                        OrderImportError.tenant_id.in_({r.tenant_id for r in rows} or tenant_ids),
                        OrderImportError.import_id.in_([r.id for r in rows]),
                    )
                    .group_by(OrderImportError.import_id)
                )
            ).all()
        )
    return [_to_view(r, counts.get(r.id, 0)) for r in rows]


async def error_report(db: Database, actor: Actor, import_id: UUID) -> tuple[str, AsyncIterator[str]]:
    """The import's filename and its error report as CSV text, streamed page by page.

    Cells that a spreadsheet would run as formulas are neutralised. Raises NotFound
    (before anything is streamed).
    """
    async with db.transaction(actor.scope) as session:
        row = await _find(session, actor, import_id)
    tenant_id, filename = row.tenant_id, row.filename

    async def lines() -> AsyncIterator[str]:
        # A byte order mark, so that spreadsheets open the report as UTF-8.
        yield "\ufeff" + csv_safety.csv_line(REPORT_COLUMNS)
        after = 0
        while True:
            async with db.transaction(actor.scope) as session:
                page = list(
                    await session.execute(
                        select(
                            OrderImportError.seq,
                            OrderImportError.row_number,
                            OrderImportError.order_ref,
                            OrderImportError.column,
                            OrderImportError.message,
                        )
                        .where(
                            OrderImportError.tenant_id == tenant_id,
                            OrderImportError.import_id == import_id,
                            OrderImportError.seq > after,
                        )
                        .order_by(OrderImportError.seq)
                        .limit(REPORT_PAGE)
                    )
                )
            if not page:
                return
            yield "".join(csv_safety.csv_line(entry[1:]) for entry in page)
            after = page[-1][0]

    return filename, lines()


# ---------------------------------------------------------------- running an import


async def run_import(
    db: Database,
    actor: Actor,
    import_id: UUID,
    chunks: AsyncIterator[bytes],
    *,
    bytes_total: int | None = None,
) -> ImportReport:
    """Read the import's file from `chunks` as it arrives, and import its orders.

    A file that cannot be read at all (empty, header only, missing columns) ends
    FAILED with no order written. Otherwise the import ends DONE. If the upload
    breaks off (too large, disconnected), the orders committed so far stay,
    `failure` says where reading stopped, and the exception is raised again.

    Raises NotFound, Conflict (the import already had its file), PermissionDenied.
    """
    _check_can_import(actor)
    async with db.transaction(actor.scope) as session:
        row = await _find(session, actor, import_id, lock=True)
        if row.status is not ImportStatus.PENDING:
            raise Conflict(
                f"This import is {row.status.value} and has had its file; "
                "create a new import for another file"
            )
        row.status = ImportStatus.RUNNING
        row.started_at = dt.datetime.now(dt.UTC)
        row.heartbeat_at = func.now()  # the database's clock, as every later beat
        # A larger announced size is refused as the body starts; it is not a progress total.
        row.bytes_total = bytes_total if bytes_total is not None and bytes_total <= MAX_FILE_BYTES else None
        tenant_id, encoding, delimiter = row.tenant_id, row.encoding, row.delimiter
    run = _ImportRun(db, actor, tenant_id, import_id)
    upload = CsvUpload(chunks, encoding=encoding, delimiter=delimiter, header_score=csv_format.header_score)
    try:
        async with heartbeat.beating(db, actor.scope, tenant_id, import_id):
            await run.read(upload)
    except BaseException as exc:
        await run.interrupted(upload, exc)
        raise
    return await get_report(db, actor, import_id)


@dataclass
class _Counters:
    rows_read: int = 0
    rows_rejected: int = 0
    orders_created: int = 0
    orders_existing: int = 0
    orders_rejected: int = 0

    def __add__(self, other: _Counters) -> _Counters:
        return _Counters(**{name: getattr(self, name) + getattr(other, name) for name in vars(self)})


@dataclass
class _Batch:
    """Orders of the file checked against the intake rules, waiting to be stored together."""

    counts: _Counters = field(default_factory=_Counters)
    problems: list[Problem] = field(default_factory=list)
    groups: list[OrderRows] = field(default_factory=list)
    cleans: list[CleanOrder] = field(default_factory=list)
    items: int = 0  # orders and rows that belong to no order
    rows: int = 0
    bytes_read: int = 0

    @property
    def full(self) -> bool:
        return self.rows >= BATCH_ROWS or self.items >= BATCH_ORDERS


class _ImportRun:
    """One import while its file streams in.

    The in-memory totals move only after a transaction committed, so a batch
    that fails and is stored again one order at a time is never counted twice.
    """

    def __init__(self, db: Database, actor: Actor, tenant_id: UUID, import_id: UUID) -> None:
        self.db = db
        self.actor = actor
        self.tenant_id = tenant_id
        self.import_id = import_id
        self.totals = _Counters()
        self.carry: list[Problem] = []  # found outside any batch (header warnings), written with the next
        self.problems_written = 0
        self.problems_dropped = 0

    async def read(self, upload: CsvUpload) -> None:
        try:
            layout = csv_format.read_header(await upload.read_header(), delimiter=upload.delimiter)
        except (FileRefused, ReadingStopped, csv_format.HeaderRefused) as refused:
            await upload.drain()
            await self._finish(upload, ImportStatus.FAILED, refused.detail)
            return
        self.carry.extend(layout.warnings)
        grouper = csv_format.OrderGrouper(layout)
        batch = _Batch()
        # The batch being stored while the next one is read and checked: PostgreSQL writes
        # one while Python prepares the other. Batches still commit one after the other,
        # in file order.
        storing: asyncio.Task | None = None
        stopped: str | None = None
        try:
            try:
                async for records in upload.record_batches():
                    for record in records:
                        for item in grouper.feed(record):
                            self._check(item, layout, upload.encoding, batch)
                            if batch.items % CHECKS_BETWEEN_YIELDS == 0:
                                # Checking is pure Python: give the batch being stored its turn
                                # to send its next statement.
                                await asyncio.sleep(0)
                        if batch.full:
                            storing = await self._hand_over(storing, batch, upload)
                            batch = _Batch()
            except ReadingStopped as exc:
                stopped = exc.detail
                await upload.drain()
            for item in grouper.stop() if stopped else grouper.finish():
                self._check(item, layout, upload.encoding, batch)
            storing = await self._hand_over(storing, batch, upload)
            await storing
            storing = None
        finally:
            if storing is not None:
                # Reading failed while a batch was being stored: let it end first, so the
                # import's final counters are those of what was committed.
                with contextlib.suppress(Exception):
                    await storing
        if self.totals.rows_read == 0 and stopped is None:
            await self._finish(upload, ImportStatus.FAILED, "The file has a header row but no order rows")
        else:
            await self._finish(upload, ImportStatus.DONE, stopped)

    async def interrupted(self, upload: CsvUpload, exc: BaseException) -> None:
        """The upload broke off or something failed: record it on the import."""
        if isinstance(exc, DomainError):
            reason = exc.detail
        else:
            log.warning("import_interrupted", import_id=str(self.import_id), error=repr(exc))
            reason = "The upload was interrupted"
        status = ImportStatus.DONE if self.totals.orders_created else ImportStatus.FAILED
        try:
            await self._finish(upload, status, f"{reason}; reading stopped after {upload.bytes_read} bytes")
        except Exception:  # the database may be what failed; the original error matters more
            log.exception("import_status_not_saved", import_id=str(self.import_id))

    def _check(
        self, item: OrderRows | Problem, layout: csv_format.Layout, encoding: str, batch: _Batch
    ) -> None:
        """Check one order of the file against the intake rules, into `batch`."""
        batch.items += 1
        if isinstance(item, Problem):  # a row that belongs to no order
            batch.rows += 1
            batch.counts.rows_read += 1
            batch.counts.rows_rejected += 1
            batch.problems.append(item)
            return
        batch.rows += item.row_count
        batch.counts.rows_read += item.row_count
        result = csv_format.parse_order(item, layout, tenant_id=self.tenant_id, encoding=encoding)
        if isinstance(result, list):
            batch.counts.orders_rejected += 1
            batch.counts.rows_rejected += item.row_count
            batch.problems.extend(result)
        else:
            batch.groups.append(item)
            batch.cleans.append(result)

    async def _hand_over(
        self, storing: asyncio.Task | None, batch: _Batch, upload: CsvUpload
    ) -> asyncio.Task:
        """Start storing `batch` as soon as the batch before it is stored."""
        batch.bytes_read = upload.bytes_read  # what the file had given when the batch was cut
        if storing is not None:
            await storing
        return asyncio.create_task(self._store(batch, upload))

    async def _store(self, batch: _Batch, upload: CsvUpload) -> None:
        """Store a checked batch: its good orders, counters and problems in one transaction."""
        groups, cleans, counts, problems = batch.groups, batch.cleans, batch.counts, batch.problems
        at = batch.bytes_read
        try:
            await self._commit(groups, cleans, counts, problems, upload, at)
        except DomainError:
            raise
        except Exception:
            # A value the rules let through and the database refuses: store the batch
            # one order at a time, so that only that order is refused.
            log.exception("import_batch_failed", import_id=str(self.import_id))
            await self._commit([], [], counts, problems, upload, at)
            for group, clean in zip(groups, cleans, strict=True):
                try:
                    await self._commit([group], [clean], _Counters(), [], upload, at)
                except DomainError:
                    raise
                except Exception as exc:
                    log.warning("import_order_failed", import_id=str(self.import_id), error=repr(exc))
                    refused = Problem(
                        group.first_row,
                        None,
                        "could not be stored, although its rows passed every check",
                        csv_format.safe_ref(group.ref),
                    )
                    lost = _Counters(orders_rejected=1, rows_rejected=group.row_count)
                    await self._commit([], [], lost, [refused], upload, at)

    async def _commit(
        self,
        groups: list[OrderRows],
        cleans: list[CleanOrder],
        counts: _Counters,
        problems: list[Problem],
        upload: CsvUpload,
        bytes_read: int,
        **final,
    ) -> None:
        """One transaction: the orders, the import's counters and progress, and the problems."""
        async with self.db.transaction(self.actor.scope) as session:
            # An import grows its tables faster than statistics follow. A plan cached while
            # they were small (a foreign-key check's above all, run for every line, check and
            # event) would stay a sequential scan and make each batch slower than the last.
            # Dropping this connection's cached plans at each batch has them made again for
            # the tables as they now are: index lookups, planned once per batch instead of
            # for every row (force_custom_plan, used before, cost twice the time per row).
            await session.execute(text("DISCARD PLANS"))
            stored = _Counters()
            refused: list[Problem] = []
            outcomes = await capture_order_batch(
                session, self.actor, self.tenant_id, cleans, channel=Channel.CSV
            )
            for group, outcome in zip(groups, outcomes, strict=True):
                if outcome.created:
                    stored.orders_created += 1
                elif outcome.errors:
                    stored.orders_rejected += 1
                    stored.rows_rejected += group.row_count
                    refused += csv_format.catalog_problems(group, outcome.errors)
                else:
                    stored.orders_existing += 1
            counts = counts + stored
            found = [*self.carry, *problems, *refused]
            kept = found[: max(MAX_PROBLEMS - self.problems_written, 0)]
            dropped = len(found) - len(kept)
            if final and self.problems_dropped + dropped:
                kept.append(
                    Problem(
                        1,
                        None,
                        f"{self.problems_dropped + dropped} more problems are not listed: "
                        f"the report keeps the first {MAX_PROBLEMS}",
                    )
                )
            if kept:
                await session.execute(
                    insert(OrderImportError),
                    [
                        {
                            "tenant_id": self.tenant_id,
                            "import_id": self.import_id,
                            "seq": self.problems_written + offset,
                            "row_number": row,
                            "order_ref": ref,
                            "column": column,
                            "message": message,
                        }
                        for offset, (row, ref, column, message) in enumerate(
                            csv_format.iter_problem_rows(kept), start=1
                        )
                    ],
                )
            totals = self.totals + counts
            await session.execute(
                update(OrderImport)
                .where(OrderImport.tenant_id == self.tenant_id, OrderImport.id == self.import_id)
                .values(
                    bytes_read=bytes_read,
                    encoding=upload.encoding,
                    delimiter=upload.delimiter,
                    **vars(totals),
                    **final,
                )
            )
        self.totals = totals
        self.carry = []
        self.problems_written += len(kept)
        self.problems_dropped += dropped

    async def _finish(self, upload: CsvUpload, status: ImportStatus, failure: str | None) -> None:
        problems = [Problem(1, None, failure)] if status is ImportStatus.FAILED and failure else []
        await self._commit(
            [],
            [],
            _Counters(),
            problems,
            upload,
            upload.bytes_read,
            status=status,
            finished_at=dt.datetime.now(dt.UTC),
            failure=failure,
        )
