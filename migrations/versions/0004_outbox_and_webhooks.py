"""Transactional outbox, webhook endpoints, deliveries and the delivery log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:05:06.028202
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

TENANT_TABLES = ('outbox_events', 'webhook_endpoints', 'webhook_deliveries', 'webhook_attempts')
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox_events',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sa.String(length=60), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('order_seq', sa.Integer(), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('fanned_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_outbox_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_outbox_events'))
    )
    op.create_index('ix_outbox_events_unfanned', 'outbox_events', ['created_at'], unique=False, postgresql_where=sa.text('fanned_out_at IS NULL'))
    op.create_index('uq_outbox_events_order_seq', 'outbox_events', ['tenant_id', 'order_id', 'order_seq'], unique=True)
    op.create_table('webhook_endpoints',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=300), server_default='', nullable=False),
    sa.Column('event_types', postgresql.ARRAY(sa.String(length=60)), server_default='{}', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('ordered', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('rate_limit_per_second', sa.Integer(), nullable=True),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('previous_secret', sa.String(length=200), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_reason', sa.String(length=300), nullable=True),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_endpoints_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('order_seq', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'succeeded', 'dead', name='delivery_status'), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.SmallInteger(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'endpoint_id'], ['webhook_endpoints.tenant_id', 'webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_tenant_id_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'event_id'], ['outbox_events.tenant_id', 'outbox_events.id'], name=op.f('fk_webhook_deliveries_tenant_id_event_id_outbox_events')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_webhook_deliveries_order', 'webhook_deliveries', ['tenant_id', 'endpoint_id', 'order_id', 'order_seq'], unique=False)
    op.create_index('uq_webhook_deliveries_event_endpoint', 'webhook_deliveries', ['tenant_id', 'event_id', 'endpoint_id'], unique=True)
    op.create_table('webhook_attempts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('attempted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('response_excerpt', sa.String(length=1000), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'delivery_id'], ['webhook_deliveries.tenant_id', 'webhook_deliveries.id'], name=op.f('fk_webhook_attempts_tenant_id_delivery_id_webhook_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_webhook_attempts'))
    )
    op.create_index('ix_webhook_attempts_endpoint_time', 'webhook_attempts', ['tenant_id', 'endpoint_id', sa.literal_column('attempted_at DESC')], unique=False)
    op.create_index('ix_webhook_attempts_order', 'webhook_attempts', ['tenant_id', 'order_id'], unique=False)
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))
    # NOTIFY is transactional: workers hear of new events exactly when they commit.
    op.execute(
        """CREATE FUNCTION orderdesk_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('orderdesk_outbox', '');
            RETURN NULL;
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
        FOR EACH STATEMENT EXECUTE FUNCTION orderdesk_notify_outbox()"""
    )


def downgrade() -> None:
    op.drop_index('ix_webhook_attempts_order', table_name='webhook_attempts')
    op.drop_index('ix_webhook_attempts_endpoint_time', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('uq_webhook_deliveries_event_endpoint', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_order', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries', postgresql_where=sa.text("status = 'pending'"))
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
    op.drop_index('uq_outbox_events_order_seq', table_name='outbox_events')
    op.drop_index('ix_outbox_events_unfanned', table_name='outbox_events', postgresql_where=sa.text('fanned_out_at IS NULL'))
    op.drop_table('outbox_events')
    op.execute('DROP FUNCTION IF EXISTS orderdesk_notify_outbox()')
    op.execute('DROP TYPE IF EXISTS delivery_status')
