"""Client portal: tenant branding, invitations of client users, decisions asked of the client.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = ('tenant_branding', 'client_invitations', 'client_decisions')

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tenant_branding',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('accent_colour', sa.String(length=7), nullable=True),
    sa.Column('logo', sa.LargeBinary(), nullable=True),
    sa.Column('logo_content_type', sa.String(length=40), nullable=True),
    sa.Column('logo_sha256', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_branding_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_tenant_branding')),
    sa.CheckConstraint("accent_colour ~ '^#[0-9a-f]{6}$'", name=op.f('ck_tenant_branding_accent_hex')),
    )
    op.create_table('client_invitations',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('role', postgresql.ENUM('viewer', 'admin', name='client_role', create_type=False), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('invited_by', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_user_id', sa.Uuid(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['accepted_user_id'], ['users.id'], name=op.f('fk_client_invitations_accepted_user_id_users')),
    sa.ForeignKeyConstraint(['invited_by'], ['users.id'], name=op.f('fk_client_invitations_invited_by_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_client_invitations_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_client_invitations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_client_invitations_token_hash')),
    )
    op.create_table('client_decisions',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('work_item_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('asked_by', sa.Uuid(), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('verdict', sa.Enum('approved', 'denied', name='decision_verdict'), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('decided_by', sa.Uuid(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['asked_by'], ['users.id'], name=op.f('fk_client_decisions_asked_by_users')),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], name=op.f('fk_client_decisions_decided_by_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_client_decisions_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['tenant_id', 'work_item_id'], ['work_items.tenant_id', 'work_items.id'], name=op.f('fk_client_decisions_tenant_id_work_item_id_work_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_client_decisions')),
    )
    op.create_index('uq_client_decisions_open', 'client_decisions', ['tenant_id', 'work_item_id'], unique=True, postgresql_where=sa.text('decided_at IS NULL'))
    op.create_index('ix_client_decisions_order', 'client_decisions', ['tenant_id', 'order_id'], unique=False)
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))


def downgrade() -> None:
    op.drop_index('ix_client_decisions_order', table_name='client_decisions')
    op.drop_index('uq_client_decisions_open', table_name='client_decisions', postgresql_where=sa.text('decided_at IS NULL'))
    op.drop_table('client_decisions')
    op.drop_table('client_invitations')
    op.drop_table('tenant_branding')
    op.execute('DROP TYPE IF EXISTS decision_verdict')
