"""Inventory and fulfillment: warehouses, stock and its ledger, allocations, backorders.

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
)
# The stock ledger is append-only, like the order timeline.
APPEND_ONLY = ('stock_movements',)
ENUMS = ('stock_movement_kind',)

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
