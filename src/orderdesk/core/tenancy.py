"""Tenant scoping: who may see which tenants' rows, in the application and in PostgreSQL.

A `Scope` travels with every unit of work. Services filter by `scope.tenant_ids`
explicitly; underneath, the same ids go into transaction-local settings that the
row-level security policies read, so a query that forgets its filter still returns
nothing foreign.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Names of the transaction-local settings the policies read (see the first migration).
TENANTS_SETTING = "orderdesk.tenant_ids"
USER_SETTING = "orderdesk.user_id"
API_KEY_SETTING = "orderdesk.api_key_hash"


@dataclass(frozen=True, slots=True)
class Scope:
    """The tenants a unit of work may read and write, and on whose behalf."""

    tenant_ids: frozenset[UUID] = field(default_factory=frozenset)
    # Lets a signed-in user read their own memberships before any tenant is chosen.
    user_id: UUID | None = None
    # Lets a request presenting an API key find that key's row, and only that one.
    api_key_hash: str | None = None

    @classmethod
    def for_tenants(cls, *tenant_ids: UUID, user_id: UUID | None = None) -> Scope:
        return cls(tenant_ids=frozenset(tenant_ids), user_id=user_id)

    def allows(self, tenant_id: UUID) -> bool:
        return tenant_id in self.tenant_ids


NO_TENANTS = Scope()


def _array_literal(ids: frozenset[UUID]) -> str:
    return "{" + ",".join(sorted(str(i) for i in ids)) + "}"


def scope_settings(scope: Scope) -> dict[str, str]:
    """The three transaction settings that carry `scope` (tenants, user, API key hash):
    setting name → value."""
    return {
        TENANTS_SETTING: _array_literal(scope.tenant_ids),
        USER_SETTING: str(scope.user_id) if scope.user_id else "",
        API_KEY_SETTING: scope.api_key_hash or "",
    }


_SET_SCOPE_SQL = (
    "SELECT set_config(:tenants_key, :tenants, true),"
    " set_config(:user_key, :user_id, true),"
    " set_config(:key_key, :key_hash, true)"
)
# Built once: a text() clause parses its SQL for bind names each time it is made.
_SET_SCOPE = text(_SET_SCOPE_SQL)


async def apply_scope(
    session: AsyncSession,
    scope: Scope,
    *,
    advisory_lock: str | None = None,
    extra_settings: Mapping[str, str] | None = None,
) -> None:
    """Set the scope for the current transaction only (`set_config(..., true)`).

    In the same round trip: `extra_settings` (name → value, also transaction-local; e.g.
    the inbound address a lookup policy reads), and `advisory_lock`, that
    transaction-level advisory lock (by name), taken after the settings.
    """
    values = scope_settings(scope)
    parameters = {
        "tenants_key": TENANTS_SETTING,
        "tenants": values[TENANTS_SETTING],
        "user_key": USER_SETTING,
        "user_id": values[USER_SETTING],
        "key_key": API_KEY_SETTING,
        "key_hash": values[API_KEY_SETTING],
    }
    if not extra_settings and advisory_lock is None:
        await session.execute(_SET_SCOPE, parameters)
        return
    sql = _SET_SCOPE_SQL
    for index, (name, value) in enumerate((extra_settings or {}).items()):
        sql += f", set_config(:extra_key_{index}, :extra_value_{index}, true)"
        parameters[f"extra_key_{index}"] = name
        parameters[f"extra_value_{index}"] = value
    if advisory_lock is not None:
        sql += ", pg_advisory_xact_lock(hashtextextended(:lock, 0))"
        parameters["lock"] = advisory_lock
    await session.execute(text(sql), parameters)
