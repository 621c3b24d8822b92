"""Work queue: SLA notifications, and settings that keep the queue fast under churn.

- `work_notifications`: who was told that an item is at risk of breaching its SLA or
  has breached it (one row per item, kind, person and due time, so the sweep that
  writes them can run any number of times).
- `idle_in_transaction_session_timeout` for the application role in this database:
  a session that opened a transaction and went quiet (a crashed request, a debugger)
  is ended after a minute, so it cannot hold item locks or keep dead row versions of
  the queue from being vacuumed. No request of the application keeps a transaction
  idle for more than a moment.
- Autovacuum for `work_claims` as early as for `work_items`, and without cost-based
  pauses for both, since every claim leaves a dead row version in each.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 10:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orderdesk.core import rls

revision: str = "0010"
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDLE_TIMEOUT = "60s"


def _role_setting(action: str) -> str:
    # Scoped to this database: the role is shared by every database of the cluster.
    return f"""DO $$
BEGIN
    EXECUTE format('ALTER ROLE %I IN DATABASE %I {action}', '{rls.app_role()}', current_database());
END
$$"""


def upgrade() -> None:
    op.create_table(
        "work_notifications",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("work_item_id", sa.Uuid(), nullable=False),
        sa.Column("recipient_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('at_risk', 'breached')", name=op.f("ck_work_notifications_kind")),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["users.id"], name=op.f("fk_work_notifications_recipient_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "work_item_id"],
            ["work_items.tenant_id", "work_items.id"],
            name=op.f("fk_work_notifications_tenant_id_work_item_id_work_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_work_notifications_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_work_notifications")),
    )
    op.create_index(
        "uq_work_notifications_once",
        "work_notifications",
        ["tenant_id", "work_item_id", "kind", "recipient_id", "due_at"],
        unique=True,
    )
    op.create_index(
        "ix_work_notifications_recipient", "work_notifications", ["recipient_id", "created_at"], unique=False
    )
    rls.execute_all(rls.tenant_policy_sql("work_notifications"))
    op.execute(rls.grant_sql("work_notifications"))
    op.execute(
        "ALTER TABLE work_claims SET (autovacuum_vacuum_scale_factor = 0.02,"
        " autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0)"
    )
    op.execute("ALTER TABLE work_items SET (autovacuum_vacuum_cost_delay = 0)")
    op.execute(_role_setting(f"SET idle_in_transaction_session_timeout = ''{IDLE_TIMEOUT}''"))


def downgrade() -> None:
    op.execute(_role_setting("RESET idle_in_transaction_session_timeout"))
    op.execute("ALTER TABLE work_items RESET (autovacuum_vacuum_cost_delay)")
    op.execute(
        "ALTER TABLE work_claims RESET (autovacuum_vacuum_scale_factor,"
        " autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay)"
    )
    op.drop_index("ix_work_notifications_recipient", table_name="work_notifications")
    op.drop_index("uq_work_notifications_once", table_name="work_notifications")
    op.drop_table("work_notifications")
