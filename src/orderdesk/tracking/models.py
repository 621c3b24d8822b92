"""Failed tracking lookups, counted to throttle guessing.

Global, like sign-in failures: a subject is a client address (which spans tenants)
or one tenant's order number, and the table is read before any order is known.
No email address or postal code is ever stored here, only what was looked up.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base


class TrackingLookupFailure(Base):
    __tablename__ = "tracking_lookup_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # "address:<ip or IPv6 /64>" or "order:<tenant id>:<number>"
    subject: Mapped[str] = mapped_column(String(200))
    failed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_tracking_lookup_failures_subject_failed_at", "subject", "failed_at"),)
