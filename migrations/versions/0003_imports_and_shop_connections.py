"""CSV order imports with their error reports; shop connections (Shopify webhooks).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:59:26.428427
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

TENANT_TABLES = ('order_imports', 'order_import_errors', 'shop_connections')


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('order_imports',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('pending', 'running', 'done', 'failed', name='import_status'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('encoding', sa.String(length=20), nullable=True),
    sa.Column('delimiter', sa.String(length=1), nullable=True),
    sa.Column('bytes_total', sa.Integer(), nullable=True),
    sa.Column('bytes_read', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('rows_read', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('rows_rejected', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('orders_created', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('orders_existing', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('orders_rejected', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('failure', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_imports_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_order_imports'))
    )
    op.create_table('shop_connections',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('platform', sa.Enum('shopify', name='shop_platform'), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('webhook_secret', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_shop_connections_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_shop_connections'))
    )
    op.create_index('uq_shop_connections_tenant_platform_domain', 'shop_connections', ['tenant_id', 'platform', 'shop_domain'], unique=True)
    op.create_table('order_import_errors',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('import_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('order_ref', sa.String(length=100), nullable=True),
    sa.Column('column', sa.String(length=100), nullable=True),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'import_id'], ['order_imports.tenant_id', 'order_imports.id'], name=op.f('fk_order_import_errors_tenant_id_import_id_order_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'import_id', 'seq', name=op.f('pk_order_import_errors'))
    )
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))


def downgrade() -> None:
    op.drop_table('order_import_errors')
    op.drop_index('uq_shop_connections_tenant_platform_domain', table_name='shop_connections')
    op.drop_table('shop_connections')
    op.drop_table('order_imports')
    for enum_name in ('import_status', 'shop_platform'):
        op.execute(f'DROP TYPE IF EXISTS {enum_name}')
