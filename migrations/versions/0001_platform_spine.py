"""Platform spine: tenants, users, memberships, API keys, sessions; row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:40:12.579215
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rls.execute_all(rls.CREATE_SCOPE_FUNCTIONS)
    op.create_table('sign_in_failures',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_failures'))
    )
    op.create_index('ix_sign_in_failures_subject_failed_at', 'sign_in_failures', ['subject', 'failed_at'], unique=False)
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('slug', name=op.f('uq_tenants_slug'))
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('staff', 'client', name='user_kind'), nullable=False),
    sa.Column('staff_role', sa.Enum('agent', 'lead', 'admin', name='staff_role'), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_sign_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.CheckConstraint("(kind = 'staff') = (staff_role IS NOT NULL)", name=op.f('ck_users_staff_role_matches_kind')),
    )
    op.create_index('uq_users_email_lower', 'users', [sa.literal_column('lower(email)')], unique=True)
    op.create_table('agent_assignments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('languages', postgresql.ARRAY(sa.String(length=16)), server_default='{}', nullable=False),
    sa.Column('channels', postgresql.ARRAY(sa.String(length=16)), server_default='{}', nullable=False),
    sa.Column('task_kinds', postgresql.ARRAY(sa.String(length=32)), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_agent_assignments_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_agent_assignments_user_id_users')),
    sa.PrimaryKeyConstraint('tenant_id', 'user_id', name=op.f('pk_agent_assignments'))
    )
    op.create_index('ix_agent_assignments_user_id', 'agent_assignments', ['user_id'], unique=False)
    op.create_table('api_keys',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_api_keys_created_by_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_api_keys_secret_hash'))
    )
    op.create_table('client_memberships',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.Enum('viewer', 'admin', name='client_role'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_client_memberships_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_client_memberships_user_id_users')),
    sa.PrimaryKeyConstraint('tenant_id', 'user_id', name=op.f('pk_client_memberships')),
    sa.UniqueConstraint('user_id', name=op.f('uq_client_memberships_user_id'))
    )
    op.create_table('web_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ip_address', postgresql.INET(), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_web_sessions'))
    )
    op.create_index(op.f('ix_web_sessions_user_id'), 'web_sessions', ['user_id'], unique=False)

    role = rls.app_role()
    rls.execute_all(rls.create_app_role_sql(role))
    # Global tables: identity, sessions and throttling are looked up before any tenant is known.
    op.execute(rls.grant_sql('tenants', 'SELECT, INSERT, UPDATE'))
    op.execute(rls.grant_sql('users', 'SELECT, INSERT, UPDATE'))
    op.execute(rls.grant_sql('web_sessions'))
    op.execute(rls.grant_sql('sign_in_failures', 'SELECT, INSERT, DELETE'))
    # A user may read their own memberships before choosing a tenant; nothing more.
    for table in ('client_memberships', 'agent_assignments'):
        rls.execute_all(rls.tenant_policy_sql(table, also_visible_when=f'user_id = {rls.SCOPE_USER}'))
        op.execute(rls.grant_sql(table))
    # A request presenting a key may find that key's row (by its hash) to learn its tenant.
    rls.execute_all(rls.tenant_policy_sql('api_keys', also_visible_when=f'secret_hash = {rls.SCOPE_API_KEY}'))
    op.execute(rls.grant_sql('api_keys', 'SELECT, INSERT, UPDATE'))


def downgrade() -> None:
    role = rls.app_role()
    op.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}')
    op.execute(f'REVOKE ALL ON SCHEMA public FROM {role}')
    op.drop_index(op.f('ix_web_sessions_user_id'), table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_table('client_memberships')
    op.drop_table('api_keys')
    op.drop_index('ix_agent_assignments_user_id', table_name='agent_assignments')
    op.drop_table('agent_assignments')
    op.drop_index('uq_users_email_lower', table_name='users')
    op.drop_table('users')
    op.drop_table('tenants')
    op.drop_index('ix_sign_in_failures_subject_failed_at', table_name='sign_in_failures')
    op.drop_table('sign_in_failures')
    for enum_name in ('client_role', 'staff_role', 'user_kind'):
        op.execute(f'DROP TYPE IF EXISTS {enum_name}')
    rls.execute_all(rls.DROP_SCOPE_FUNCTIONS)
