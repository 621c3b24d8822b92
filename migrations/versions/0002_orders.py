"""Orders: catalog, orders and lines, holds, verification checks, timeline, idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:54:19.686207
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = (
    'catalog_items', 'idempotency_keys', 'order_counters', 'orders', 'order_lines',
    'order_holds', 'verification_checks', 'order_events',
)
ENUMS = (
    'order_channel', 'order_status', 'payment_status', 'order_priority', 'hold_reason',
    'check_result', 'check_resolution',
)

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Trigram indexes make free-text search over number, reference, name and email fast.
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    op.create_table('catalog_items',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_catalog_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'sku', name=op.f('pk_catalog_items'))
    )
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response_status', sa.SmallInteger(), nullable=False),
    sa.Column('response_body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_idempotency_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'], unique=False)
    op.create_table('order_counters',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('last_number', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_counters_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_order_counters'))
    )
    op.create_table('orders',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.BigInteger(), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.Column('channel', sa.Enum('agent', 'api', 'csv', 'email', 'chat', 'shop', 'portal', name='order_channel'), nullable=False),
    sa.Column('status', sa.Enum('captured', 'awaiting_verification', 'verified', 'allocated', 'backordered', 'picking', 'packed', 'partially_shipped', 'shipped', 'delivered', 'return_requested', 'return_received', 'refunded', 'return_rejected', 'closed', 'cancelled', name='order_status'), nullable=False),
    sa.Column('payment_status', sa.Enum('pending', 'authorized', 'paid', 'failed', 'refunded', name='payment_status'), nullable=False),
    sa.Column('priority', sa.Enum('normal', 'high', 'urgent', name='order_priority'), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=False),
    sa.Column('customer_email', sa.String(length=254), nullable=True),
    sa.Column('customer_phone', sa.String(length=20), nullable=True),
    sa.Column('shipping_address', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('billing_address', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('shipping_minor', sa.BigInteger(), nullable=False),
    sa.Column('discount_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('ship_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deliver_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=40)), server_default='{}', nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('lines_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('search_text', sa.Text(), sa.Computed("lower(number::text || ' ' || coalesce(external_ref, '') || ' ' || customer_name || ' ' || coalesce(customer_email, ''))", persisted=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('last_event_seq', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint('total_minor >= 0', name=op.f('ck_orders_total_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_orders_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_orders'))
    )
    op.create_index('ix_orders_duplicate_lookup', 'orders', ['tenant_id', 'customer_email', 'lines_fingerprint', 'created_at'], unique=False)
    op.create_index('ix_orders_search_trgm', 'orders', ['search_text'], unique=False, postgresql_using='gin', postgresql_ops={'search_text': 'gin_trgm_ops'})
    op.create_index('ix_orders_tags', 'orders', ['tags'], unique=False, postgresql_using='gin')
    op.create_index('ix_orders_tenant_created', 'orders', ['tenant_id', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_orders_tenant_status_created', 'orders', ['tenant_id', 'status', sa.literal_column('created_at DESC')], unique=False)
    op.create_index('uq_orders_tenant_external_ref', 'orders', ['tenant_id', 'external_ref'], unique=True, postgresql_where=sa.text('external_ref IS NOT NULL'))
    op.create_index('uq_orders_tenant_number', 'orders', ['tenant_id', 'number'], unique=True)
    op.create_table('order_events',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('actor_kind', sa.String(length=20), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('changes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_order_events_tenant_id_order_id_orders')),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'seq', name=op.f('pk_order_events'))
    )
    op.create_table('order_holds',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('reason', sa.Enum('awaiting_payment', 'address_problem', 'fraud_review', 'out_of_stock', 'customer_request', 'other', name='hold_reason'), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('placed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('placed_by', sa.String(length=100), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_order_holds_tenant_id_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'id', name=op.f('pk_order_holds'))
    )
    op.create_index('uq_order_holds_active_reason', 'order_holds', ['tenant_id', 'order_id', 'reason'], unique=True, postgresql_where=sa.text('released_at IS NULL'))
    op.create_table('order_lines',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.SmallInteger(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_order_lines_quantity_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_order_lines_tenant_id_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'line_no', name=op.f('pk_order_lines'))
    )
    op.create_table('verification_checks',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('check', sa.String(length=40), nullable=False),
    sa.Column('result', sa.Enum('passed', 'failed', name='check_result'), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolution', sa.Enum('confirmed', 'overridden', name='check_resolution'), nullable=True),
    sa.Column('resolved_by', sa.String(length=100), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_note', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_verification_checks_tenant_id_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'check', name=op.f('pk_verification_checks'))
    )

    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        if table != 'order_events':
            op.execute(rls.grant_sql(table))
    # The timeline is append-only: the application may read and add, never change or remove;
    # the trigger holds even for the owner.
    op.execute(rls.grant_sql('order_events', 'SELECT, INSERT'))
    op.execute(
        """CREATE FUNCTION orderdesk_refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'order events are immutable' USING ERRCODE = 'insufficient_privilege';
        END $$"""
    )
    op.execute(
        """CREATE TRIGGER order_events_immutable BEFORE UPDATE OR DELETE ON order_events
        FOR EACH ROW EXECUTE FUNCTION orderdesk_refuse_event_change()"""
    )


def downgrade() -> None:
    op.drop_table('verification_checks')
    op.drop_table('order_lines')
    op.drop_index('uq_order_holds_active_reason', table_name='order_holds', postgresql_where=sa.text('released_at IS NULL'))
    op.drop_table('order_holds')
    op.drop_table('order_events')
    op.drop_index('uq_orders_tenant_number', table_name='orders')
    op.drop_index('uq_orders_tenant_external_ref', table_name='orders', postgresql_where=sa.text('external_ref IS NOT NULL'))
    op.drop_index('ix_orders_tenant_status_created', table_name='orders')
    op.drop_index('ix_orders_tenant_created', table_name='orders')
    op.drop_index('ix_orders_tags', table_name='orders', postgresql_using='gin')
    op.drop_index('ix_orders_search_trgm', table_name='orders', postgresql_using='gin', postgresql_ops={'search_text': 'gin_trgm_ops'})
    op.drop_index('ix_orders_duplicate_lookup', table_name='orders')
    op.drop_table('orders')
    op.drop_table('order_counters')
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_table('catalog_items')
    op.execute('DROP FUNCTION IF EXISTS orderdesk_refuse_event_change()')
    for enum_name in ENUMS:
        op.execute(f'DROP TYPE IF EXISTS {enum_name}')
