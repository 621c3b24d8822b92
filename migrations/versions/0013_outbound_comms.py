"""Outbound communication: email templates, agent macros, chat channels, platform notices.

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-26 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = ('email_templates', 'agent_macros', 'comms_outbound_settings', 'chat_threads', 'platform_notices')

revision: str = '0013'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stamps() -> list[sa.Column]:
    return [
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    ]


def upgrade() -> None:
    op.create_table('email_templates',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    *_stamps(),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_email_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_email_templates'))
    )
    op.create_index('uq_email_templates_name', 'email_templates', ['tenant_id', 'name'], unique=True)
    op.create_table('agent_macros',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('insert_text', sa.Text(), nullable=True),
    sa.Column('set_outcome', postgresql.ENUM(name='work_outcome', create_type=False), nullable=True),
    sa.Column('add_tag', sa.String(length=40), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    *_stamps(),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_agent_macros_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_agent_macros'))
    )
    op.create_index('uq_agent_macros_name', 'agent_macros', ['tenant_id', 'name'], unique=True)
    op.create_table('comms_outbound_settings',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('auto_answer_template_id', sa.Uuid(), nullable=True),
    sa.Column('chat_webhook_secret', sa.String(length=100), nullable=True),
    sa.Column('chat_reply_url', sa.String(length=2000), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_comms_outbound_settings_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['tenant_id', 'auto_answer_template_id'], ['email_templates.tenant_id', 'email_templates.id'], name=op.f('fk_comms_outbound_settings_tenant_id_auto_answer_template_id_email_templates')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_comms_outbound_settings'))
    )
    op.create_table('chat_threads',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_chat_threads_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['tenant_id', 'conversation_id'], ['conversations.tenant_id', 'conversations.id'], name=op.f('fk_chat_threads_tenant_id_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('tenant_id', 'external_id', name=op.f('pk_chat_threads'))
    )
    op.create_index('ix_chat_threads_conversation', 'chat_threads', ['tenant_id', 'conversation_id'], unique=False)
    op.create_table('platform_notices',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('to_address', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('provider_message_id', sa.String(length=998), nullable=False),
    sa.Column('delivery_status', postgresql.ENUM(name='message_delivery_status', create_type=False), nullable=False),
    sa.Column('send_attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_platform_notices_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_platform_notices'))
    )
    op.create_index('ix_platform_notices_due', 'platform_notices', ['next_attempt_at'], unique=False, postgresql_where=sa.text("delivery_status = 'queued'"))
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))


def downgrade() -> None:
    op.drop_index('ix_platform_notices_due', table_name='platform_notices', postgresql_where=sa.text("delivery_status = 'queued'"))
    op.drop_table('platform_notices')
    op.drop_index('ix_chat_threads_conversation', table_name='chat_threads')
    op.drop_table('chat_threads')
    op.drop_table('comms_outbound_settings')
    op.drop_index('uq_agent_macros_name', table_name='agent_macros')
    op.drop_table('agent_macros')
    op.drop_index('uq_email_templates_name', table_name='email_templates')
    op.drop_table('email_templates')
