"""Tracking page: failed order lookups, counted to throttle guessing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 10:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tracking_lookup_failures',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tracking_lookup_failures'))
    )
    op.create_index('ix_tracking_lookup_failures_subject_failed_at', 'tracking_lookup_failures', ['subject', 'failed_at'], unique=False)
    # Global (no tenant_id): subjects are client addresses and tenant-qualified order numbers.
    op.execute(rls.grant_sql('tracking_lookup_failures', 'SELECT, INSERT, DELETE'))


def downgrade() -> None:
    op.drop_index('ix_tracking_lookup_failures_subject_failed_at', table_name='tracking_lookup_failures')
    op.drop_table('tracking_lookup_failures')
