"""One place that turns errors into answers: RFC 9457 problem details for the API,
friendly pages (or htmx-friendly redirects) for people in a browser."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template

from orderdesk.core.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Throttled,
    TooLarge,
    ValidationFailed,
)

log = structlog.get_logger("orderdesk.web")

PROBLEM_JSON = "application/problem+json"

_STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidTransition: 409,
    PermissionDenied: 403,
    AuthenticationFailed: 401,
    Throttled: 429,
    TooLarge: 413,
    ValidationFailed: 422,
}


def wants_json(request: Request) -> bool:
    if request.url.path.startswith(("/api/", "/schema")):
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def problem(status: int, detail: str, *, type_: str = "about:blank", **extra: Any) -> dict[str, Any]:
    body = {"type": type_, "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    body.update(extra)
    return body


def _respond(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    headers = dict(headers or {})
    if wants_json(request):
        return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
    actor = request.scope.get("user")
    if status == 401 and (request.method == "GET" or is_htmx(request)):
        reason = "expired" if "expired" in body["detail"] else "signin"
        target = f"/sign-in?reason={reason}&next={quote(request.url.path)}"
        if is_htmx(request):
            return Response(content="", status_code=200, headers={"HX-Redirect": target})
        return Redirect(path=target)
    template = "errors/_fragment.html" if is_htmx(request) else "errors/page.html"
    return Template(
        template_name=template,
        context={"problem": body, "actor": actor, "request": request},
        status_code=status,
        headers=headers,
        media_type=MediaType.HTML,
    )


def domain_error_handler(request: Request, exc: DomainError) -> Response:
    status = next((code for kind, code in _STATUS_BY_ERROR.items() if isinstance(exc, kind)), 400)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    type_ = "about:blank"
    if isinstance(exc, ValidationFailed):
        type_ = "/problems/validation"
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    elif isinstance(exc, InvalidTransition):
        type_ = "/problems/invalid-transition"
        extra.update(state=exc.state, action=exc.action, allowed_actions=list(exc.allowed))
    elif isinstance(exc, Throttled):
        type_ = "/problems/throttled"
        headers["Retry-After"] = str(exc.retry_after)
    return _respond(request, status, problem(status, exc.detail, type_=type_, **extra), headers)


def _validation_items(exc: ValidationException) -> list[dict[str, Any]]:
    return [item for item in (exc.extra or []) if isinstance(item, dict)]


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        items = _validation_items(exc)
        # A malformed id in the path is, to the caller, simply an object that is not there.
        if items and all(item.get("source") == "path" for item in items):
            return _respond(request, 404, problem(404, "Not found"))
        errors = [
            {
                "field": str(item.get("key") or "body"),
                "message": str(item.get("message", "is not valid")),
            }
            for item in items
        ]
        body = problem(
            400,
            "The request could not be read: see errors",
            type_="/problems/validation",
            errors=errors or [{"field": "body", "message": exc.detail}],
        )
        return _respond(request, 400, body)
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else _default_detail(status)
    return _respond(request, status, problem(status, detail), dict(exc.headers or {}))


def _default_detail(status: int) -> str:
    return {
        401: "You are not signed in",
        403: "You do not have access to this",
        404: "Not found",
        405: "This method is not allowed here",
        413: "The request body is too large",
    }.get(status, HTTPStatus(status).description)


def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return _respond(request, 500, problem(500, "Something went wrong on our side; it has been logged"))


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
