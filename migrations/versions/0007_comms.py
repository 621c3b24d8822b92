"""Customer communication: conversations, messages, attachments, per-tenant comms settings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 10:02:51.604573
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderdesk.core import rls

TENANT_TABLES = ('conversations', 'messages', 'message_attachments')
ENUMS = (
    'conversation_status', 'message_channel', 'message_direction', 'message_intent',
    'message_placement', 'message_delivery_status',
)
# Mail arrives before any tenant is known: the inbound listener may read the one settings
# row whose local part it was given (a transaction-local setting), and nothing else.
INBOUND_LOOKUP = "inbound_local_part = (SELECT nullif(current_setting('orderdesk.inbound_local_part', true), ''))"

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('comms_settings',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('inbound_local_part', sa.String(length=64), nullable=True),
    sa.Column('inbound_secret_hash', sa.String(length=64), nullable=True),
    sa.Column('from_name', sa.String(length=200), nullable=True),
    sa.Column('from_address', sa.String(length=254), nullable=True),
    sa.Column('auto_answer_enabled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('order_number_pattern', sa.String(length=200), nullable=True),
    sa.Column('known_contacts', postgresql.ARRAY(sa.String(length=254)), server_default='{}', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('inbound_local_part = lower(inbound_local_part)', name=op.f('ck_comms_settings_local_part_lower')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_comms_settings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_comms_settings'))
    )
    op.create_index('uq_comms_settings_inbound_local_part', 'comms_settings', ['inbound_local_part'], unique=True)
    op.create_table('conversations',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('customer_email', sa.String(length=254), nullable=True),
    sa.Column('customer_name', sa.String(length=200), nullable=True),
    sa.Column('reply_token', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('status', sa.Enum('open', 'waiting', 'closed', name='conversation_status'), nullable=False),
    sa.Column('channel', sa.Enum('email', 'chat', 'portal', 'tracking', 'note', name='message_channel'), nullable=False),
    sa.Column('message_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'order_id'], ['orders.tenant_id', 'orders.id'], name=op.f('fk_conversations_tenant_id_order_id_orders')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_conversations_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_conversations'))
    )
    op.create_index('ix_conversations_customer', 'conversations', ['tenant_id', 'customer_email'], unique=False)
    op.create_index('ix_conversations_order', 'conversations', ['tenant_id', 'order_id'], unique=False)
    op.create_index('uq_conversations_reply_token', 'conversations', ['tenant_id', 'reply_token'], unique=True)
    op.create_table('messages',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('direction', sa.Enum('in', 'out', name='message_direction'), nullable=False),
    sa.Column('channel', postgresql.ENUM('email', 'chat', 'portal', 'tracking', 'note', name='message_channel', create_type=False), nullable=False),
    sa.Column('sender_address', sa.String(length=254), nullable=True),
    sa.Column('sender_name', sa.String(length=200), nullable=True),
    sa.Column('recipients', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=True),
    sa.Column('text_body', sa.Text(), nullable=True),
    sa.Column('html_body', sa.Text(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('provider_message_id', sa.String(length=998), nullable=True),
    sa.Column('in_reply_to', sa.String(length=998), nullable=True),
    sa.Column('references', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('intent', sa.Enum('where_is_my_order', 'cancel', 'change_address', 'return_request', 'other', name='message_intent'), nullable=True),
    sa.Column('intent_confidence', sa.Float(), nullable=True),
    sa.Column('is_automated', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('automated_reason', sa.String(length=100), nullable=True),
    sa.Column('placement', sa.Enum('token', 'headers', 'order_number', 'new', 'triage', 'outbound', name='message_placement'), nullable=False),
    sa.Column('placement_note', sa.String(length=500), nullable=True),
    sa.Column('raw_mime', sa.LargeBinary(), nullable=True),
    sa.Column('raw_size', sa.Integer(), nullable=True),
    sa.Column('delivery_status', sa.Enum('queued', 'sent', 'failed', name='message_delivery_status'), nullable=True),
    sa.Column('send_attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('intent_confidence IS NULL OR (intent_confidence >= 0 AND intent_confidence <= 1)', name=op.f('ck_messages_confidence_range')),
    sa.ForeignKeyConstraint(['tenant_id', 'conversation_id'], ['conversations.tenant_id', 'conversations.id'], name=op.f('fk_messages_tenant_id_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_messages'))
    )
    op.create_index('ix_messages_conversation', 'messages', ['tenant_id', 'conversation_id', 'created_at'], unique=False)
    op.create_index('ix_messages_outbound_due', 'messages', ['next_attempt_at'], unique=False, postgresql_where=sa.text("delivery_status = 'queued'"))
    op.create_index('uq_messages_provider_message_id', 'messages', ['tenant_id', 'provider_message_id'], unique=True, postgresql_where=sa.text('provider_message_id IS NOT NULL'))
    op.create_table('message_attachments',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content_id', sa.String(length=255), nullable=True),
    sa.Column('is_inline', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('size >= 0 AND size <= 10485760', name=op.f('ck_message_attachments_size_limit')),
    sa.ForeignKeyConstraint(['tenant_id', 'message_id'], ['messages.tenant_id', 'messages.id'], name=op.f('fk_message_attachments_tenant_id_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_message_attachments'))
    )
    op.create_index('ix_message_attachments_message', 'message_attachments', ['tenant_id', 'message_id'], unique=False)
    op.create_index('ix_work_items_conversation', 'work_items', ['tenant_id', 'conversation_id'], unique=False)
    op.create_foreign_key(op.f('fk_work_items_tenant_id_conversation_id_conversations'), 'work_items', 'conversations', ['tenant_id', 'conversation_id'], ['tenant_id', 'id'])
    rls.execute_all(rls.tenant_policy_sql('comms_settings', also_visible_when=INBOUND_LOOKUP))
    op.execute(rls.grant_sql('comms_settings'))
    for table in TENANT_TABLES:
        rls.execute_all(rls.tenant_policy_sql(table))
        op.execute(rls.grant_sql(table))


def downgrade() -> None:
    op.drop_constraint(op.f('fk_work_items_tenant_id_conversation_id_conversations'), 'work_items', type_='foreignkey')
    op.drop_index('ix_work_items_conversation', table_name='work_items')
    op.drop_index('ix_message_attachments_message', table_name='message_attachments')
    op.drop_table('message_attachments')
    op.drop_index('uq_messages_provider_message_id', table_name='messages', postgresql_where=sa.text('provider_message_id IS NOT NULL'))
    op.drop_index('ix_messages_outbound_due', table_name='messages', postgresql_where=sa.text("delivery_status = 'queued'"))
    op.drop_index('ix_messages_conversation', table_name='messages')
    op.drop_table('messages')
    op.drop_index('uq_conversations_reply_token', table_name='conversations')
    op.drop_index('ix_conversations_order', table_name='conversations')
    op.drop_index('ix_conversations_customer', table_name='conversations')
    op.drop_table('conversations')
    op.drop_index('uq_comms_settings_inbound_local_part', table_name='comms_settings')
    op.drop_table('comms_settings')
    for name in ENUMS:
        op.execute(f'DROP TYPE IF EXISTS {name}')
