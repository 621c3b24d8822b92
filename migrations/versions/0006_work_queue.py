"""Work queue: work items with SLA clocks, their claim history, and per-tenant SLA policies.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = ('sla_policies', 'work_items', 'work_claims')
ENUMS = ('work_item_kind', 'work_item_status', 'work_outcome')
ACTIVE = "status IN ('open', 'claimed', 'snoozed', 'waiting_customer', 'waiting_client')"

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sla_policies',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('business_hours', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('holidays', postgresql.ARRAY(sa.Date()), server_default='{}', nullable=False),
    sa.Column('targets', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('at_risk_percent', sa.SmallInteger(), server_default=sa.text('20'), nullable=False),
    sa.Column('client_tier', sa.SmallInteger(), server_default=sa.text('2'), nullable=False),
    sa.Column('stuck_after_hours', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_sla_policies_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_sla_policies'))
    )
    op.create_table('work_items',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('order_entry', 'verification', 'exception', 'customer_message', 'tracking_follow_up', 'return', name='work_item_kind'), nullable=False),
    sa.Column('status', sa.Enum('open', 'claimed', 'snoozed', 'waiting_customer', 'waiting_client', 'done', 'cancelled', name='work_item_status'), nullable=False),
    sa.Column('outcome', sa.Enum('resolved', 'no_action_needed', 'escalated', 'duplicate', 'resolved_elsewhere', 'order_cancelled', 'withdrawn', name='work_outcome'), nullable=True),
    sa.Column('outcome_note', sa.String(length=500), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('cause', sa.String(length=60), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('order_number', sa.BigInteger(), nullable=True),
    sa.Column('conversation_id', sa.Uuid(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=True),
    sa.Column('priority', postgresql.ENUM('normal', 'high', 'urgent', name='order_priority', create_type=False), nullable=False),
    sa.Column('value_minor', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('client_tier', sa.SmallInteger(), server_default=sa.text('2'), nullable=False),
    sa.Column('sla_target_seconds', sa.Integer(), nullable=False),
    sa.Column('sla_consumed_seconds', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('sla_running_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('at_risk_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.Uuid(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cause_resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_by', sa.String(length=200), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.ForeignKeyConstraint(['claimed_by'], ['users.id'], name=op.f('fk_work_items_claimed_by_users')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_work_items_tenant_id_order_id_orders')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_work_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_work_items'))
    )
    op.create_index('ix_work_items_queue', 'work_items', ['due_at', sa.literal_column('priority DESC'), sa.literal_column('value_minor DESC'), 'client_tier', 'created_at', 'id'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index('uq_work_items_active_cause', 'work_items', ['tenant_id', 'order_id', 'cause'], unique=True, postgresql_where=sa.text(f"order_id IS NOT NULL AND {ACTIVE}"))
    op.create_index('ix_work_items_tenant_status', 'work_items', ['tenant_id', 'status'], unique=False)
    op.create_index('ix_work_items_order', 'work_items', ['tenant_id', 'order_id'], unique=False)
    op.create_index('ix_work_items_claimed_by', 'work_items', ['claimed_by'], unique=False, postgresql_where=sa.text("status = 'claimed'"))
    op.create_index('ix_work_items_lease', 'work_items', ['lease_expires_at'], unique=False, postgresql_where=sa.text("status = 'claimed'"))
    op.create_index('ix_work_items_snoozed', 'work_items', ['snoozed_until'], unique=False, postgresql_where=sa.text("status = 'snoozed'"))
    op.create_table('work_claims',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('work_item_id', sa.Uuid(), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('via', sa.String(length=20), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('release_reason', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['users.id'], name=op.f('fk_work_claims_agent_id_users')),
    sa.ForeignKeyConstraint(['tenant_id', 'work_item_id'], ['work_items.tenant_id', 'work_items.id'], name=op.f('fk_work_claims_tenant_id_work_item_id_work_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_work_claims'))
    )
    op.create_index('uq_work_claims_active', 'work_claims', ['tenant_id', 'work_item_id'], unique=True, postgresql_where=sa.text('released_at IS NULL'))
    op.create_index('ix_work_claims_agent', 'work_claims', ['agent_id', 'claimed_at'], unique=False)
    # The queue is a hot, update-heavy table: leave room for HOT updates and vacuum early,
    # so that dead row versions left by claims do not pile up in front of "Get next".
    op.execute(
        "ALTER TABLE work_items SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,"
        " autovacuum_analyze_scale_factor = 0.02)"
    )
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))


def downgrade() -> None:
    op.drop_index('ix_work_claims_agent', table_name='work_claims')
    op.drop_index('uq_work_claims_active', table_name='work_claims', postgresql_where=sa.text('released_at IS NULL'))
    op.drop_table('work_claims')
    op.drop_index('ix_work_items_snoozed', table_name='work_items')
    op.drop_index('ix_work_items_lease', table_name='work_items')
    op.drop_index('ix_work_items_claimed_by', table_name='work_items')
    op.drop_index('ix_work_items_order', table_name='work_items')
    op.drop_index('ix_work_items_tenant_status', table_name='work_items')
    op.drop_index('uq_work_items_active_cause', table_name='work_items')
    op.drop_index('ix_work_items_queue', table_name='work_items')
    op.drop_table('work_items')
    op.drop_table('sla_policies')
    for name in ENUMS:
        op.execute(f'DROP TYPE IF EXISTS {name}')
