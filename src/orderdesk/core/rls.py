"""Row-level security, as SQL the migrations execute.

Every tenant-owned table gets RLS ENABLEd and FORCEd (so even the table owner is
filtered) and a policy comparing `tenant_id` with the tenants of the current
transaction. The setting is read through a STABLE function inside a sub-select:
PostgreSQL then evaluates it once per statement as an init-plan and can use the
`tenant_id` index, instead of calling it once per row.
"""

from __future__ import annotations

import os

APP_ROLE_ENV = "APP_DATABASE_ROLE"
APP_ROLE_DEFAULT = "orderdesk_app"

# The cast makes ANY take the array value, not the rows of a sub-query.
SCOPE_TENANTS = "((SELECT orderdesk_scope_tenants())::uuid[])"
SCOPE_USER = "(SELECT orderdesk_scope_user())"
SCOPE_API_KEY = "(SELECT orderdesk_scope_api_key())"

# Each helper returns a list of single statements: asyncpg runs one per call.
CREATE_SCOPE_FUNCTIONS = [
    """CREATE FUNCTION orderdesk_scope_tenants() RETURNS uuid[]
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(nullif(current_setting('orderdesk.tenant_ids', true), ''), '{}')::uuid[] $$""",
    """CREATE FUNCTION orderdesk_scope_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('orderdesk.user_id', true), '')::uuid $$""",
    """CREATE FUNCTION orderdesk_scope_api_key() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('orderdesk.api_key_hash', true), '') $$""",
]

DROP_SCOPE_FUNCTIONS = [
    "DROP FUNCTION IF EXISTS orderdesk_scope_api_key()",
    "DROP FUNCTION IF EXISTS orderdesk_scope_user()",
    "DROP FUNCTION IF EXISTS orderdesk_scope_tenants()",
]


def app_role() -> str:
    """The application role's name; validated because it is spliced into DDL."""
    role = os.environ.get(APP_ROLE_ENV, APP_ROLE_DEFAULT)
    if not role.replace("_", "").isalnum() or not role[0].isalpha() or len(role) > 63:
        raise ValueError(f"{APP_ROLE_ENV} must be a plain identifier, got {role!r}")
    return role


def create_app_role_sql(role: str) -> list[str]:
    # Roles belong to the whole cluster, so several databases (one per test run, say)
    # share it; create it only once and never with privileges that defeat RLS.
    return [
        f"""DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$""",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"""GRANT EXECUTE ON FUNCTION orderdesk_scope_tenants(), orderdesk_scope_user(),
    orderdesk_scope_api_key() TO {role}""",
    ]


def tenant_policy_sql(table: str, *, also_visible_when: str | None = None) -> list[str]:
    """ENABLE + FORCE RLS on `table` with the tenant policy.

    `also_visible_when` widens what may be *read* (never what may be written), e.g.
    a user's own memberships before a tenant is chosen.
    """
    visible = f"tenant_id = ANY {SCOPE_TENANTS}"
    if also_visible_when:
        visible = f"({visible}) OR ({also_visible_when})"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"""CREATE POLICY tenant_isolation ON {table}
    USING ({visible})
    WITH CHECK (tenant_id = ANY {SCOPE_TENANTS})""",
    ]


def execute_all(statements: list[str]) -> None:
    """Run statements one by one inside the current migration."""
    from alembic import op

    for statement in statements:
        op.execute(statement)


def grant_sql(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> str:
    return f"GRANT {privileges} ON {table} TO {app_role()};"
