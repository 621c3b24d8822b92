"""Work items: the holder's index is ordered by claim time.

Get next first looks for the item the agent already holds. While a long transaction
is open, the holder's index keeps an entry for every item the agent held since it
began, and the look-up walked them all. Ordered by (holder, claimed_at), the look-up
starts at the agent's last Get next claim (less a margin) and steps over none of the
older ones (services._CLAIM).

Built CONCURRENTLY, then swapped, so a live queue keeps taking claims meanwhile.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-27 00:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_work_items_claimed_by"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _rebuild("claimed_by, claimed_at")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _rebuild("claimed_by")


def _rebuild(columns: str) -> None:
    # Each step may be re-run after a failure: a CONCURRENTLY build that failed leaves an
    # invalid index behind, and outside a transaction the steps before it stay done.
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}_new")
    op.execute(f"CREATE INDEX CONCURRENTLY {INDEX}_new ON work_items ({columns}) WHERE status = 'claimed'")
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    op.execute(f"ALTER INDEX {INDEX}_new RENAME TO {INDEX}")
