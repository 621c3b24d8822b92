"""CSRF protection for cookie-authenticated requests.

Every unsafe request made with a session cookie must carry the session's token,
in the `X-CSRF-Token` header (htmx sends it from the page's `hx-headers`) or in a
`_csrf` form field. API-key requests carry no cookie and need no token. The sign-in
form, made before any session exists, uses a double-submit cookie instead, and so
do the public tracking page's forms (route option `csrf="double_submit"`): they
check their own cookie, whether or not the visitor also happens to be signed in.
"""

from __future__ import annotations

import hmac

from litestar import Request
from litestar.exceptions import PermissionDeniedException

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "_csrf"
PRE_SESSION_COOKIE = "od_csrf"
MISSING_TOKEN = "The form has expired or the CSRF token is missing; reload the page and try again"


async def submitted_token(request: Request) -> str | None:
    if token := request.headers.get(CSRF_HEADER):
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def tokens_match(expected: str | None, submitted: str | None) -> bool:
    return bool(expected and submitted) and hmac.compare_digest(expected, submitted)


async def check_csrf(request: Request) -> None:
    """`before_request` hook. Raises PermissionDeniedException (403) on a missing or wrong token."""
    if request.method in SAFE_METHODS or request.scope.get("auth") != "session":
        return
    if request.route_handler.opt.get("csrf") == "double_submit":
        return
    if not tokens_match(request.user.csrf_token, await submitted_token(request)):
        raise PermissionDeniedException(detail=MISSING_TOKEN)
