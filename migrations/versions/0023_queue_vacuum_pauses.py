"""Work queue: autovacuum of the queue tables pauses as it works, like any other table's.

Migration 0010 turned off autovacuum's cost-based pauses on `work_items` and
`work_claims`, so that a VACUUM would keep up with the dead row versions every claim
leaves. It keeps up paused too: with the server's default pause (2 ms every 200 cost
units) a VACUUM of both tables of a 100,000-item queue after ten seconds of claims took
0.24-0.29 s instead of 0.09-0.17 s. Unpaused, it takes a whole core for that moment, and on a small server the
claims beside it wait for the CPU: Get next's slowest claims came with those VACUUMs
(docs/benchmarks.md, "Second morning: the p99 tail was the benchmark's own").

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-27 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_TABLES = ("work_items", "work_claims")


def upgrade() -> None:
    for table in QUEUE_TABLES:
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_cost_delay = 2, autovacuum_vacuum_cost_limit = 200)"
        )


def downgrade() -> None:
    for table in QUEUE_TABLES:
        op.execute(f"ALTER TABLE {table} SET (autovacuum_vacuum_cost_delay = 0)")
        op.execute(f"ALTER TABLE {table} RESET (autovacuum_vacuum_cost_limit)")
