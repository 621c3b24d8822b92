"""Work items: the order and conversation look-ups index only the items that have one.

Most items have no conversation (only customer messages do) and some have no order.
Indexed in full, every such item sat in one huge run of equal keys (tenant, NULL)
that each claim and release added to (a status change is never a HOT update) and
that every VACUUM of the queue walked whole: the Get next latency tail under load
came with those VACUUMs. No query looks an item up by a NULL order or conversation,
so the partial indexes answer every query the full ones did.

Built CONCURRENTLY, then swapped, so a live queue keeps taking claims meanwhile.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-26 21:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, column): each becomes partial over the items that have the column set.
LOOKUPS = (("ix_work_items_order", "order_id"), ("ix_work_items_conversation", "conversation_id"))


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for index, column in LOOKUPS:
            _rebuild(index, column, f"WHERE {column} IS NOT NULL")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for index, column in LOOKUPS:
            _rebuild(index, column, "")


def _rebuild(index: str, column: str, where: str) -> None:
    # Each step may be re-run after a failure: a CONCURRENTLY build that failed leaves an
    # invalid index behind, and outside a transaction the steps before it stay done.
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}_new")
    op.execute(f"CREATE INDEX CONCURRENTLY {index}_new ON work_items (tenant_id, {column}) {where}")
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
    op.execute(f"ALTER INDEX {index}_new RENAME TO {index}")
