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
from orderdesk.core.errors import AuthenticationFailed

SESSION_COOKIE = "od_session"


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
        authorization = _header(scope, b"authorization")
        try:
            if authorization is not None:
                scheme, _, credential = authorization.partition(" ")
                if scheme.lower() != "bearer" or not credential.strip():
                    raise AuthenticationFailed("Use 'Authorization: Bearer <API key>'")
                scope["user"] = await accounts.resolve_api_key(db, credential.strip())
                scope["auth"] = "api_key"
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
        await next_app(scope, receive, send)


def client_address(request) -> str | None:
    """The caller's IP address, or None when the server did not give a real one."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None
