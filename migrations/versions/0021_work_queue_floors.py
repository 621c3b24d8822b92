"""Work queue: a floor per tenant, where Get next may start its scan of the queue.

Why: a transaction held open beside the queue (a long report) keeps every row
version that claims leave behind, and with them their entries at the head of
`ix_work_items_queue`. Each Get next used to walk all of them, from the start of
the index, before reaching an open item: the longer the report, the slower each
claim. A floor is a due time below which no open item that an agent of the
tenant may take exists; Get next starts there, past the dead entries
(workqueue/floors.py explains the rules and who keeps them).

- `work_queue_floors`: one row per tenant; no row means no floor yet.
- Triggers lower the floor, under a shared advisory lock per tenant, whenever an
  item becomes open or more urgent (inserted, handed back, returned, woken,
  re-timed, given other skills) and, to minus infinity, whenever an assignment
  changes who may take what. Raising it is `floors.raise_floors`, which takes the
  same lock exclusively, so it never misses an item opened at that moment.
- An open item's SLA clock runs, so it has a due time: now a CHECK, since a claim
  that starts at a due time would never reach an open item without one. (No code
  path opens an item with a paused clock; any such row gets "due now".)

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-26 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_HAS_DUE = "status <> 'open' OR due_at IS NOT NULL"


def upgrade() -> None:
    op.execute("UPDATE work_items SET due_at = now() WHERE status = 'open' AND due_at IS NULL")
    op.create_check_constraint(op.f("ck_work_items_open_has_due"), "work_items", OPEN_HAS_DUE)

    op.create_table(
        "work_queue_floors",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("due_floor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_work_queue_floors_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_work_queue_floors")),
    )
    rls.execute_all(rls.tenant_policy_sql("work_queue_floors"))
    op.execute(rls.grant_sql("work_queue_floors", "SELECT, INSERT, UPDATE"))
    # The floor's row is rewritten at most a few times a second; keep its versions prunable.
    op.execute("ALTER TABLE work_queue_floors SET (fillfactor = 50)")

    op.execute(
        """CREATE FUNCTION orderdesk_work_floor_key(tenant uuid) RETURNS bigint
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT hashtextextended('work-queue-floor:' || tenant::text, 0) $$"""
    )
    op.execute(
        """CREATE FUNCTION orderdesk_work_floor_lower() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- Shared: item changes never wait on each other here, only on a raise.
            PERFORM pg_advisory_xact_lock_shared(orderdesk_work_floor_key(NEW.tenant_id));
            UPDATE work_queue_floors SET due_floor = NEW.due_at, changed_at = now()
            WHERE tenant_id = NEW.tenant_id AND due_floor > NEW.due_at;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE FUNCTION orderdesk_work_floor_reset() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- Someone may now take items that nobody could: the next raise looks again from the start.
            PERFORM pg_advisory_xact_lock_shared(orderdesk_work_floor_key(NEW.tenant_id));
            UPDATE work_queue_floors SET due_floor = '-infinity', changed_at = now()
            WHERE tenant_id = NEW.tenant_id AND due_floor > '-infinity';
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER work_items_floor_on_insert AFTER INSERT ON work_items
        FOR EACH ROW WHEN (NEW.status = 'open') EXECUTE FUNCTION orderdesk_work_floor_lower()"""
    )
    op.execute(
        """CREATE TRIGGER work_items_floor_on_update AFTER UPDATE ON work_items
        FOR EACH ROW WHEN (NEW.status = 'open' AND (
            OLD.status <> 'open' OR NEW.due_at < OLD.due_at OR OLD.tenant_id <> NEW.tenant_id
            OR OLD.kind <> NEW.kind OR OLD.language IS DISTINCT FROM NEW.language
            OR OLD.channel IS DISTINCT FROM NEW.channel))
        EXECUTE FUNCTION orderdesk_work_floor_lower()"""
    )
    op.execute(
        """CREATE TRIGGER agent_assignments_floor_reset AFTER INSERT OR UPDATE ON agent_assignments
        FOR EACH ROW EXECUTE FUNCTION orderdesk_work_floor_reset()"""
    )
    role = rls.app_role()
    op.execute(
        f"""GRANT EXECUTE ON FUNCTION orderdesk_work_floor_key(uuid), orderdesk_work_floor_lower(),
        orderdesk_work_floor_reset() TO {role}"""
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS agent_assignments_floor_reset ON agent_assignments")
    op.execute("DROP TRIGGER IF EXISTS work_items_floor_on_update ON work_items")
    op.execute("DROP TRIGGER IF EXISTS work_items_floor_on_insert ON work_items")
    op.execute("DROP FUNCTION IF EXISTS orderdesk_work_floor_reset()")
    op.execute("DROP FUNCTION IF EXISTS orderdesk_work_floor_lower()")
    op.execute("DROP FUNCTION IF EXISTS orderdesk_work_floor_key(uuid)")
    op.drop_table("work_queue_floors")
    op.drop_constraint(op.f("ck_work_items_open_has_due"), "work_items", type_="check")
