"""The public tracking page: thin handlers over `tracking.services`.

No session is needed here. The forms carry a double-submit CSRF token (a cookie
scoped to /track plus the same value in a hidden field), as the sign-in form does.
Every answer is marked private and uncacheable, sends no Referer (the link in the
address bar is the key to the order) and may not be framed.
"""

from __future__ import annotations

import secrets

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from orderdesk.core.errors import Conflict, NotFound, Throttled, ValidationFailed
from orderdesk.tracking import services, wording
from orderdesk.tracking.links import PATH_PREFIX
from orderdesk.web import csrf
from orderdesk.web.auth import client_address
from orderdesk.web.deps import DB, AppSettings

CSRF_COOKIE = "od_track_csrf"
# The forms' CSRF failure in a customer's words (the cookie expired, or the page is very old).
FORM_EXPIRED = "This form has expired. Please reload the page and try again."
NOTICES = {
    "message": "Thank you: your message has been sent. We will answer by email.",
    "return": "Your return request has been sent. We will email you what happens next.",
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def _csrf_token(request: Request) -> str:
    # Reuse the cookie's token while it looks like ours, so two open tabs both keep working.
    current = request.cookies.get(CSRF_COOKIE) or ""
    return (
        current
        if 40 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum()
        else (secrets.token_urlsafe(32))
    )


def _page(
    request: Request,
    settings: AppSettings,
    template: str,
    context: dict,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    token = _csrf_token(request)
    page = Template(
        template_name=template,
        context={**context, "csrf_token": token},
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )
    page.cookies.append(
        Cookie(
            key=CSRF_COOKIE,
            value=token,
            httponly=True,
            samesite="strict",
            secure=settings.cookie_secure,
            max_age=24 * 3600,
            path="/track",
        )
    )
    return page


def _csrf_ok(request: Request, data: dict[str, str]) -> bool:
    return csrf.tokens_match(request.cookies.get(CSRF_COOKIE), data.get(csrf.CSRF_FIELD))


def _errors(exc: ValidationFailed) -> dict[str, str]:
    return {e.field: e.message for e in exc.errors}


def _gone(request: Request, settings: AppSettings, exc: services.LinkExpired) -> Template:
    return _page(request, settings, "tracking/expired.html", {"tenant_slug": exc.tenant_slug}, status=410)


def _missing(request: Request, settings: AppSettings) -> Template:
    return _page(request, settings, "tracking/missing.html", {}, status=404)


class TrackingController(Controller):
    path = "/track"
    include_in_schema = False
    opt = {"csrf": "double_submit"}

    @get("/")
    async def landing(self, request: Request, settings: AppSettings) -> Template:
        return _page(request, settings, "tracking/landing.html", {})

    # ------------------------------------------------------------ lookup by number

    @get("/{tenant_slug:str}")
    async def lookup_form(
        self, request: Request, db: DB, settings: AppSettings, tenant_slug: FromPath[str]
    ) -> Template:
        try:
            tenant, branding = await services.lookup_page(db, tenant_slug)
        except NotFound:
            return _missing(request, settings)
        return _page(
            request,
            settings,
            "tracking/lookup.html",
            {"tenant_slug": tenant.slug, "branding": branding, "number": "", "proof": "", "errors": {}},
        )

    @post("/{tenant_slug:str}")
    async def lookup(
        self,
        request: Request,
        db: DB,
        settings: AppSettings,
        tenant_slug: FromPath[str],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response:
        try:
            tenant, branding = await services.lookup_page(db, tenant_slug)
        except NotFound:
            return _missing(request, settings)
        number = str(data.get("number", ""))[:100]
        proof = str(data.get("email_or_postal_code", ""))[:300]
        context = {
            "tenant_slug": tenant.slug,
            "branding": branding,
            "number": number,
            "proof": proof,
            "errors": {},
        }
        if not _csrf_ok(request, data):
            context["problem"] = FORM_EXPIRED
            return _page(request, settings, "tracking/lookup.html", context, status=403)
        try:
            path = await services.lookup_order(
                db, settings.secret_key, tenant.slug, number, proof, address=client_address(request)
            )
        except ValidationFailed as exc:
            context["errors"] = _errors(exc)
            return _page(request, settings, "tracking/lookup.html", context, status=422)
        except Throttled as exc:
            # Like a miss, the answer repeats nothing that was typed: it is the same for everyone.
            context.update(problem=exc.detail, number="", proof="")
            return _page(
                request,
                settings,
                "tracking/lookup.html",
                context,
                status=429,
                headers={"Retry-After": str(exc.retry_after)},
            )
        except NotFound:
            # A wrong number and a wrong email get this very page, byte for byte: nothing
            # typed is echoed back, since what was typed is what differs between them.
            context.update(problem=services.NO_MATCH, number="", proof="")
            return _page(request, settings, "tracking/lookup.html", context, status=404)
        return Redirect(path=path, status_code=303, headers=PAGE_HEADERS)

    # ------------------------------------------------------------ one order, by its link

    @get("/o/{token:str}")
    async def order_page(
        self, request: Request, db: DB, settings: AppSettings, token: FromPath[str], sent: FromQuery[str] = ""
    ) -> Template:
        try:
            link = await services.resolve_link(db, settings.secret_key, token)
            view = await services.view_order(db, link)
        except services.LinkExpired as exc:
            return _gone(request, settings, exc)
        except NotFound:
            return _missing(request, settings)
        return self._order(request, settings, token, view, notice=NOTICES.get(sent))

    @staticmethod
    def _order(
        request: Request,
        settings: AppSettings,
        token: str,
        view,
        *,
        notice: str | None = None,
        status: int = 200,
        **form_state,
    ) -> Template:
        context = {
            "view": view,
            "branding": view.branding,
            "token": token,
            "base_path": PATH_PREFIX + token,
            "notice": notice,
            "message_errors": {},
            "message_body": "",
            "return_errors": {},
            "return_form": {},
            "problem": None,
            # One value per rendered form: the same form sent twice is stored once.
            "nonce": secrets.token_urlsafe(18),
            "return_reasons": [(reason.value, label) for reason, label in wording.RETURN_REASONS.items()],
            **form_state,
        }
        return _page(request, settings, "tracking/order.html", context, status=status)

    @post("/o/{token:str}/messages")
    async def send_message(
        self,
        request: Request,
        db: DB,
        settings: AppSettings,
        token: FromPath[str],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response:
        body = str(data.get("body", ""))
        try:
            link = await services.resolve_link(db, settings.secret_key, token)
            if not _csrf_ok(request, data):
                view = await services.view_order(db, link)
                return self._order(
                    request, settings, token, view, status=403, problem=FORM_EXPIRED, message_body=body
                )
            try:
                await services.send_message(db, link, body, nonce=str(data.get("nonce", "")))
            except ValidationFailed as exc:
                view = await services.view_order(db, link)
                return self._order(
                    request, settings, token, view, status=422, message_errors=_errors(exc), message_body=body
                )
        except services.LinkExpired as exc:
            return _gone(request, settings, exc)
        except NotFound:
            return _missing(request, settings)
        return Redirect(
            path=f"{PATH_PREFIX}{token}?sent=message#messages", status_code=303, headers=PAGE_HEADERS
        )

    @post("/o/{token:str}/returns")
    async def request_return(
        self,
        request: Request,
        db: DB,
        settings: AppSettings,
        token: FromPath[str],
        data: URLEncodedBody[dict[str, str]],
    ) -> Response:
        quantities = {}
        for name, value in data.items():
            if name.startswith("quantity_") and name.removeprefix("quantity_").isdigit():
                quantities[int(name.removeprefix("quantity_"))] = str(value)[:20]
        form = services.ReturnRequestForm(
            reason=str(data.get("reason", "")), note=str(data.get("note", ""))[:5000], quantities=quantities
        )
        state = {"return_form": {"reason": form.reason, "note": form.note, **data}}
        try:
            link = await services.resolve_link(db, settings.secret_key, token)
            if not _csrf_ok(request, data):
                view = await services.view_order(db, link)
                return self._order(request, settings, token, view, status=403, problem=FORM_EXPIRED, **state)
            try:
                await services.request_return(db, link, form)
            except ValidationFailed as exc:
                view = await services.view_order(db, link)
                return self._order(
                    request, settings, token, view, status=422, return_errors=_errors(exc), **state
                )
            except Conflict as exc:
                view = await services.view_order(db, link)
                return self._order(request, settings, token, view, status=409, problem=exc.detail, **state)
        except services.LinkExpired as exc:
            return _gone(request, settings, exc)
        except NotFound:
            return _missing(request, settings)
        # Redirect after the post: the RMA is listed under "Returns", and a reload cannot ask twice.
        return Redirect(
            path=f"{PATH_PREFIX}{token}?sent=return#returns", status_code=303, headers=PAGE_HEADERS
        )
