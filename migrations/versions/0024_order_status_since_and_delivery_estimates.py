"""Orders: when each entered its current status; shipments: the carrier's delivery estimate.

- `orders.status_changed_at`: the moment the order entered its current status. The
  operations view measures "stuck" from it; `updated_at` moves with every edit (a note,
  a tag, a tracking scan), so an order edited daily never looked stuck however long it
  sat in one status. A trigger keeps it, not the application: orders change status
  through the ORM but also through raw SQL (the allocation's RESERVE_PLAN), and a
  column the database keeps covers every writer, present and future. An insert takes
  now(); an update that changes the status takes now() (the transaction's start, like
  every other default here).
- Backfill: the newest timeline entry (`order_events`) whose `changes.status` moved the
  order *into* its current status, which is exactly the moment wanted. Where none
  matches (a status written without a timeline entry), `updated_at` instead: it is no
  earlier than the status change, so such an order may look stuck later than it should,
  never sooner.
- `ix_orders_tenant_status_since` (tenant, status, status_changed_at): the stuck query
  asks, per tenant and status, for orders that entered it before a cutoff. The existing
  (tenant, status, created_at) index finds the status but must visit every open order
  of it to read the time; this one reads only the stuck ones, in the order the list
  wants. It is written only when the status changes, which already rewrites the other.
- `shipments.estimated_delivery_at` and `tracking_events.estimated_delivery_at`: the
  carrier's estimated delivery when a tracking update carries one; the event keeps what
  was said, the shipment the estimate of the newest event that gave one.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-27 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """UPDATE orders o SET status_changed_at = coalesce(
            (SELECT max(e.created_at) FROM order_events e
             WHERE e.tenant_id = o.tenant_id AND e.order_id = o.id
               AND e.changes->'status'->>1 = o.status::text),
            o.updated_at)"""
    )
    op.alter_column("orders", "status_changed_at", server_default=sa.text("now()"), nullable=False)
    op.execute(
        """CREATE FUNCTION orderdesk_order_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
                NEW.status_changed_at := now();
            END IF;
            RETURN NEW;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER orders_status_changed_at BEFORE INSERT OR UPDATE OF status ON orders
        FOR EACH ROW EXECUTE FUNCTION orderdesk_order_status_changed()"""
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION orderdesk_order_status_changed() TO {rls.app_role()}")
    op.create_index(
        "ix_orders_tenant_status_since", "orders", ["tenant_id", "status", "status_changed_at"], unique=False
    )

    op.add_column("shipments", sa.Column("estimated_delivery_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "tracking_events", sa.Column("estimated_delivery_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("tracking_events", "estimated_delivery_at")
    op.drop_column("shipments", "estimated_delivery_at")
    op.drop_index("ix_orders_tenant_status_since", table_name="orders")
    op.execute("DROP TRIGGER IF EXISTS orders_status_changed_at ON orders")
    op.execute("DROP FUNCTION IF EXISTS orderdesk_order_status_changed()")
    op.drop_column("orders", "status_changed_at")
