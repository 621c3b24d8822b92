"""Mail bytes are stored without compression attempts.

`messages.raw_mime` and `message_attachments.data` were `EXTENDED` (PostgreSQL's
default for `bytea`): every value over about 2 KB is first put through pglz. Most of
these bytes cannot shrink (base64 of photos and PDFs in the raw message, the photos and
PDFs themselves), yet pglz reads the whole value before giving up whenever its first
kilobyte compresses (the headers and text of a message always do): measured on a
2.8 MB message with three photos, 110-230 ms for the INSERT, against 20-50 ms with
`EXTERNAL` (bench/inbound_email.py). `EXTERNAL` still moves large values out of line
(TOAST) but stores them as they are; what is given up is compressing the few kilobytes
of raw text mail.

Revision ID: 0018
Revises: 0013
Create Date: 2026-11-26 13:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("messages", "raw_mime"), ("message_attachments", "data"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")


def downgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTENDED")
