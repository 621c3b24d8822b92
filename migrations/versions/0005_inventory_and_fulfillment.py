"""Inventory and fulfillment: warehouses, stock and its ledger, allocations, backorders,
shipments, tracking events, returns, invoices and credit notes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 07:13:45.819227
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = (
    'warehouses', 'stock_levels', 'stock_movements', 'stock_update_receipts', 'order_allocations', 'backorders',
    'shipments', 'shipment_lines', 'tracking_events', 'returns', 'return_lines',
    'document_counters', 'invoices',
)
# The stock ledger and issued invoices are append-only, like the order timeline.
APPEND_ONLY = ('stock_movements', 'invoices')
ENUMS = (
    'stock_movement_kind', 'tracking_status', 'shipment_attention', 'return_status', 'return_reason', 'document_kind',
)

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stock_update_receipts',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response_body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stock_update_receipts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'event_id', name=op.f('pk_stock_update_receipts'))
    )
    op.create_table('warehouses',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('address', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('priority', sa.SmallInteger(), server_default=sa.text('100'), nullable=False),
    sa.Column('ships_to', postgresql.ARRAY(sa.String(length=2)), server_default='{}', nullable=False),
    sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False),
    sa.Column('cutoff_time', sa.Time(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('priority >= 0', name=op.f('ck_warehouses_priority_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_warehouses_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_warehouses'))
    )
    op.create_index('uq_warehouses_tenant_code', 'warehouses', ['tenant_id', 'code'], unique=True)
    op.create_table('stock_levels',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('warehouse_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('on_hand', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('reserved', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('low_stock_threshold', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('low_stock_threshold IS NULL OR low_stock_threshold >= 0', name=op.f('ck_stock_levels_threshold_not_negative')),
    sa.CheckConstraint('on_hand >= 0', name=op.f('ck_stock_levels_on_hand_not_negative')),
    sa.CheckConstraint('reserved >= 0 AND reserved <= on_hand', name=op.f('ck_stock_levels_reserved_within_on_hand')),
    sa.ForeignKeyConstraint(['tenant_id', 'warehouse_id'], ['warehouses.tenant_id', 'warehouses.id'], name=op.f('fk_stock_levels_tenant_id_warehouse_id_warehouses'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'warehouse_id', 'sku', name=op.f('pk_stock_levels'))
    )
    op.create_index('ix_stock_levels_tenant_sku', 'stock_levels', ['tenant_id', 'sku'], unique=False)
    op.create_table('stock_movements',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('warehouse_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.Enum('receipt', 'count', 'adjustment', 'reserve', 'release', 'ship', 'return', name='stock_movement_kind'), nullable=False),
    sa.Column('on_hand_before', sa.Integer(), nullable=False),
    sa.Column('on_hand_after', sa.Integer(), nullable=False),
    sa.Column('reserved_before', sa.Integer(), nullable=False),
    sa.Column('reserved_after', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('source_event_id', sa.String(length=200), nullable=True),
    sa.Column('actor_kind', sa.String(length=20), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'warehouse_id'], ['warehouses.tenant_id', 'warehouses.id'], name=op.f('fk_stock_movements_tenant_id_warehouse_id_warehouses')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_stock_movements'))
    )
    op.create_index('ix_stock_movements_level', 'stock_movements', ['tenant_id', 'warehouse_id', 'sku', 'id'], unique=False)
    op.create_index('ix_stock_movements_order', 'stock_movements', ['tenant_id', 'order_id'], unique=False, postgresql_where=sa.text('order_id IS NOT NULL'))
    op.create_table('backorders',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.SmallInteger(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('urgency', sa.SmallInteger(), nullable=False),
    sa.Column('order_created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_backorders_quantity_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id', 'line_no'], ['order_lines.tenant_id', 'order_lines.order_id', 'order_lines.line_no'], name=op.f('fk_backorders_tenant_id_order_id_line_no_order_lines'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'line_no', name=op.f('pk_backorders'))
    )
    op.create_index('ix_backorders_queue', 'backorders', ['tenant_id', 'sku', sa.literal_column('urgency DESC'), 'order_created_at'], unique=False)
    op.create_table('order_allocations',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.SmallInteger(), nullable=False),
    sa.Column('warehouse_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('reserved_qty', sa.Integer(), nullable=False),
    sa.Column('shipped_qty', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('reserved_qty >= 0 AND shipped_qty >= 0', name=op.f('ck_order_allocations_quantities_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id', 'line_no'], ['order_lines.tenant_id', 'order_lines.order_id', 'order_lines.line_no'], name=op.f('fk_order_allocations_tenant_id_order_id_line_no_order_lines'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'warehouse_id'], ['warehouses.tenant_id', 'warehouses.id'], name=op.f('fk_order_allocations_tenant_id_warehouse_id_warehouses')),
    sa.PrimaryKeyConstraint('tenant_id', 'order_id', 'line_no', 'warehouse_id', name=op.f('pk_order_allocations'))
    )
    op.create_index('ix_order_allocations_warehouse_sku', 'order_allocations', ['tenant_id', 'warehouse_id', 'sku'], unique=False)
    # Fulfillment
    op.create_table('returns',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.SmallInteger(), nullable=False),
    sa.Column('rma', sa.String(length=40), nullable=False),
    sa.Column('status', sa.Enum('requested', 'approved', 'rejected', 'received', 'refunded', name='return_status'), nullable=False),
    sa.Column('reason', sa.Enum('damaged', 'defective', 'wrong_item', 'not_as_described', 'no_longer_needed', 'arrived_late', 'other', name='return_reason'), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=True),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sa.String(length=1000), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_warehouse_id', sa.Uuid(), nullable=True),
    sa.Column('refund_minor', sa.BigInteger(), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('refund_minor IS NULL OR refund_minor > 0', name=op.f('ck_returns_refund_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_returns_tenant_id_order_id_orders')),
    sa.ForeignKeyConstraint(['tenant_id', 'received_warehouse_id'], ['warehouses.tenant_id', 'warehouses.id'], name=op.f('fk_returns_tenant_id_received_warehouse_id_warehouses')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_returns'))
    )
    op.create_index('uq_returns_order_number', 'returns', ['tenant_id', 'order_id', 'number'], unique=True)
    op.create_index('uq_returns_tenant_rma', 'returns', ['tenant_id', 'rma'], unique=True)
    op.create_table('shipments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.SmallInteger(), nullable=False),
    sa.Column('warehouse_id', sa.Uuid(), nullable=False),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.Column('carrier', sa.String(length=60), nullable=False),
    sa.Column('service', sa.String(length=60), nullable=True),
    sa.Column('tracking_number', sa.String(length=100), nullable=True),
    sa.Column('tracking_url', sa.String(length=2000), nullable=True),
    sa.Column('status', sa.Enum('shipped', 'info_received', 'in_transit', 'out_for_delivery', 'failed_attempt', 'available_for_pickup', 'delivered', 'exception', 'returned_to_sender', name='tracking_status'), nullable=False),
    sa.Column('attention', sa.Enum('stuck', 'failed_attempt', 'exception', 'returned_to_sender', name='shipment_attention'), nullable=True),
    sa.Column('attention_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attention_detail', sa.String(length=500), nullable=True),
    sa.Column('shipped_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_shipments_tenant_id_order_id_orders')),
    sa.ForeignKeyConstraint(['tenant_id', 'warehouse_id'], ['warehouses.tenant_id', 'warehouses.id'], name=op.f('fk_shipments_tenant_id_warehouse_id_warehouses')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_shipments'))
    )
    op.create_index('ix_shipments_in_flight', 'shipments', ['tenant_id', 'last_event_at'], unique=False, postgresql_where=sa.text('delivered_at IS NULL'))
    op.create_index('ix_shipments_tracking_number', 'shipments', ['tenant_id', 'tracking_number'], unique=False)
    op.create_index('uq_shipments_external_ref', 'shipments', ['tenant_id', 'external_ref'], unique=True, postgresql_where=sa.text('external_ref IS NOT NULL'))
    op.create_index('uq_shipments_order_number', 'shipments', ['tenant_id', 'order_id', 'number'], unique=True)
    op.create_table('return_lines',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('return_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.SmallInteger(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('restocked_qty', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('condition', sa.String(length=300), nullable=True),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_return_lines_quantity_positive')),
    sa.CheckConstraint('restocked_qty >= 0 AND restocked_qty <= quantity', name=op.f('ck_return_lines_restocked_within_quantity')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id', 'line_no'], ['order_lines.tenant_id', 'order_lines.order_id', 'order_lines.line_no'], name=op.f('fk_return_lines_tenant_id_order_id_line_no_order_lines')),
    sa.ForeignKeyConstraint(['tenant_id', 'return_id'], ['returns.tenant_id', 'returns.id'], name=op.f('fk_return_lines_tenant_id_return_id_returns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'return_id', 'line_no', name=op.f('pk_return_lines'))
    )
    op.create_table('shipment_lines',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('shipment_id', sa.Uuid(), nullable=False),
    sa.Column('line_no', sa.SmallInteger(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_shipment_lines_quantity_positive')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id', 'line_no'], ['order_lines.tenant_id', 'order_lines.order_id', 'order_lines.line_no'], name=op.f('fk_shipment_lines_tenant_id_order_id_line_no_order_lines')),
    sa.ForeignKeyConstraint(['tenant_id', 'shipment_id'], ['shipments.tenant_id', 'shipments.id'], name=op.f('fk_shipment_lines_tenant_id_shipment_id_shipments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'shipment_id', 'line_no', name=op.f('pk_shipment_lines'))
    )
    op.create_table('tracking_events',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('shipment_id', sa.Uuid(), nullable=False),
    sa.Column('external_event_id', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('shipped', 'info_received', 'in_transit', 'out_for_delivery', 'failed_attempt', 'available_for_pickup', 'delivered', 'exception', 'returned_to_sender', name='tracking_status'), nullable=False),
    sa.Column('raw_status', sa.String(length=200), nullable=True),
    sa.Column('location', sa.String(length=200), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'shipment_id'], ['shipments.tenant_id', 'shipments.id'], name=op.f('fk_tracking_events_tenant_id_shipment_id_shipments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_tracking_events'))
    )
    op.create_index('ix_tracking_events_shipment_time', 'tracking_events', ['tenant_id', 'shipment_id', 'occurred_at'], unique=False)
    op.create_index('uq_tracking_events_sender_id', 'tracking_events', ['tenant_id', 'shipment_id', 'external_event_id'], unique=True)
    # Invoices
    op.create_table('document_counters',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('invoice', 'credit_note', name='document_kind'), nullable=False),
    sa.Column('year', sa.SmallInteger(), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_document_counters_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'kind', 'year', name=op.f('pk_document_counters'))
    )
    op.create_table('invoices',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('invoice', 'credit_note', name='document_kind'), nullable=False),
    sa.Column('year', sa.SmallInteger(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('invoice_id', sa.Uuid(), nullable=True),
    sa.Column('return_id', sa.Uuid(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal_minor', sa.BigInteger(), nullable=False),
    sa.Column('tax_minor', sa.BigInteger(), nullable=False),
    sa.Column('shipping_minor', sa.BigInteger(), nullable=False),
    sa.Column('discount_minor', sa.BigInteger(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('seller', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('buyer', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'invoice_id'], ['invoices.tenant_id', 'invoices.id'], name=op.f('fk_invoices_tenant_id_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_invoices_tenant_id_order_id_orders')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_invoices'))
    )
    op.create_index('ix_invoices_order', 'invoices', ['tenant_id', 'order_id'], unique=False)
    op.create_index('uq_invoices_number', 'invoices', ['tenant_id', 'number'], unique=True)
    op.create_index('uq_invoices_order_invoice', 'invoices', ['tenant_id', 'order_id'], unique=True, postgresql_where=sa.text("kind = 'invoice'"))
    op.create_index('uq_invoices_return', 'invoices', ['tenant_id', 'return_id'], unique=True, postgresql_where=sa.text('return_id IS NOT NULL'))
    op.create_index('uq_invoices_sequence', 'invoices', ['tenant_id', 'kind', 'year', 'sequence'], unique=True)
    _secure()


def _secure() -> None:
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        if table in APPEND_ONLY:
            op.execute(rls.grant_sql(table, 'SELECT, INSERT'))
        else:
            op.execute(rls.grant_sql(table))
    op.execute(
        """CREATE FUNCTION orderdesk_refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END $$"""
    )
    for table in APPEND_ONLY:
        op.execute(
            f"""CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION orderdesk_refuse_ledger_change()"""
        )


def downgrade() -> None:
    op.drop_index('uq_invoices_sequence', table_name='invoices')
    op.drop_index('uq_invoices_return', table_name='invoices', postgresql_where=sa.text('return_id IS NOT NULL'))
    op.drop_index('uq_invoices_order_invoice', table_name='invoices', postgresql_where=sa.text("kind = 'invoice'"))
    op.drop_index('uq_invoices_number', table_name='invoices')
    op.drop_index('ix_invoices_order', table_name='invoices')
    op.drop_table('invoices')
    op.drop_table('document_counters')
    op.drop_index('uq_tracking_events_sender_id', table_name='tracking_events')
    op.drop_index('ix_tracking_events_shipment_time', table_name='tracking_events')
    op.drop_table('tracking_events')
    op.drop_table('shipment_lines')
    op.drop_table('return_lines')
    op.drop_index('uq_shipments_order_number', table_name='shipments')
    op.drop_index('uq_shipments_external_ref', table_name='shipments', postgresql_where=sa.text('external_ref IS NOT NULL'))
    op.drop_index('ix_shipments_tracking_number', table_name='shipments')
    op.drop_index('ix_shipments_in_flight', table_name='shipments', postgresql_where=sa.text('delivered_at IS NULL'))
    op.drop_table('shipments')
    op.drop_index('uq_returns_tenant_rma', table_name='returns')
    op.drop_index('uq_returns_order_number', table_name='returns')
    op.drop_table('returns')
    op.drop_index('ix_order_allocations_warehouse_sku', table_name='order_allocations')
    op.drop_table('order_allocations')
    op.drop_index('ix_backorders_queue', table_name='backorders')
    op.drop_table('backorders')
    op.drop_index('ix_stock_movements_order', table_name='stock_movements', postgresql_where=sa.text('order_id IS NOT NULL'))
    op.drop_index('ix_stock_movements_level', table_name='stock_movements')
    op.drop_table('stock_movements')
    op.drop_index('ix_stock_levels_tenant_sku', table_name='stock_levels')
    op.drop_table('stock_levels')
    op.drop_index('uq_warehouses_tenant_code', table_name='warehouses')
    op.drop_table('warehouses')
    op.drop_table('stock_update_receipts')
    op.execute('DROP FUNCTION IF EXISTS orderdesk_refuse_ledger_change()')
    for enum_name in ENUMS:
        op.execute(f'DROP TYPE IF EXISTS {enum_name}')
