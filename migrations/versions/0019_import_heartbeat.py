"""Imports: a heartbeat while an import runs, and the `interrupted` status.

- `order_imports.heartbeat_at`: refreshed by the process running an import while it
  runs. An import still `running` whose heartbeat has gone quiet lost its process
  (killed, redeployed) and is shown as `interrupted`.
- `import_status` gains `interrupted`. The downgrade folds such imports back into
  `done` (what was committed stays; their `failure` says why they stopped).

Revision ID: 0019
Revises: 0013
Create Date: 2026-11-26 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL adds an enum value inside a transaction as long as the same
    # transaction does not use it; nothing below does.
    op.execute("ALTER TYPE import_status ADD VALUE IF NOT EXISTS 'interrupted'")
    op.add_column('order_imports', sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('order_imports', 'heartbeat_at')
    # An enum value cannot be dropped: the type is made again without it.
    op.execute("ALTER TYPE import_status RENAME TO import_status_with_interrupted")
    op.execute("CREATE TYPE import_status AS ENUM ('pending', 'running', 'done', 'failed')")
    op.execute(
        "ALTER TABLE order_imports ALTER COLUMN status TYPE import_status USING "
        "(CASE WHEN status::text = 'interrupted' THEN 'done' ELSE status::text END)::import_status"
    )
    op.execute("DROP TYPE import_status_with_interrupted")
