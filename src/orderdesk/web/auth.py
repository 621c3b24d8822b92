"""Who is calling: a tenant API key (`Authorization: Bearer …`) or a session cookie.

The middleware only identifies the caller; guards decide what they may do. A
credential that was presented but failed is remembered in the scope so that the
answer can say why ("revoked", "expired") rather than a bare 401.
"""

from __future__ import annotations

import ipaddress

import structlog
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from orderdesk.accounts import services as accounts
from orderdesk.core.db import Database
from orderdesk.core.errors import AuthenticationFailed

SESSION_COOKIE = "od_session"
# Where the request's own view of the database is kept (see `request_database`).
REQUEST_DB_KEY = "orderdesk.request_db"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class AuthenticationMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        # Static files and probes need no caller (and must not cost a database round trip).
        path = scope["path"]
        return path.startswith("/static/") or path in ("/healthz", "/readyz")

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        db = Litestar.from_scope(scope).state.db
        scope["user"] = None
        scope["auth"] = None
        state = scope.setdefault("state", {})
        request_db: Database | None = None
        authorization = _header(scope, b"authorization")
        try:
            if authorization is not None:
                scheme, _, credential = authorization.partition(" ")
                if scheme.lower() != "bearer" or not credential.strip():
                    raise AuthenticationFailed("Use 'Authorization: Bearer <API key>'")
                caller = await accounts.open_api_key_transaction(db, credential.strip())
                scope["user"] = caller.actor
                scope["auth"] = "api_key"
                if caller.transaction is not None:
                    # The request's work continues the transaction that found the key:
                    # one checkout, one scope, one commit for lookup and work together.
                    request_db = state[REQUEST_DB_KEY] = db.continuing(caller.transaction, caller.actor.scope)
            elif token := _cookie(scope, SESSION_COOKIE):
                scope["user"] = await accounts.resolve_session(db, token)
                scope["auth"] = "session"
        except AuthenticationFailed as failure:
            state["auth_failure"] = failure
        actor = scope["user"]
        if actor is not None:
            structlog.contextvars.bind_contextvars(
                actor=actor.label(),
                tenants=",".join(sorted(str(t) for t in actor.tenant_ids))[:200],
            )
        if request_db is None:
            await next_app(scope, receive, send)
            return
        try:
            await next_app(scope, receive, _releasing(request_db, send))
        finally:
            await request_db.release_open_transaction()


def _releasing(request_db, send: Send) -> Send:
    """`send`, giving back the request's open transaction, if its work never took it, as
    the answer starts (a streamed answer does not hold a connection while it streams)."""

    async def send_releasing(message) -> None:
        if message["type"] == "http.response.start":
            await request_db.release_open_transaction()
        await send(message)

    return send_releasing


def request_database(scope: Scope) -> Database:
    """The database as this request sees it: continuing its authentication's transaction
    when there is one (API keys), otherwise the application's."""
    return scope.get("state", {}).get(REQUEST_DB_KEY) or Litestar.from_scope(scope).state.db


def client_address(request) -> str | None:
    """The caller's IP address, or None when the server did not give a real one."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None
