"""Sign-in pages and the account/key API."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, URLEncodedBody
from litestar.response import Redirect, Template

from orderdesk.accounts import services
from orderdesk.accounts.actors import ActorKind
from orderdesk.accounts.schemas import ApiKeyCreate, ApiKeyView, IssuedApiKeyView, MeView
from orderdesk.accounts.tokens import new_csrf_token
from orderdesk.core.errors import AuthenticationFailed, FieldError, Throttled, ValidationFailed
from orderdesk.web import csrf
from orderdesk.web.auth import SESSION_COOKIE, client_address
from orderdesk.web.deps import DB, AppSettings, CurrentActor
from orderdesk.web.guards import requires_actor
from orderdesk.web.openapi import problem_responses

SIGN_IN_REASONS = {
    "expired": "Your session has expired; please sign in again.",
    "signin": "Please sign in to continue.",
    "signedout": "You have been signed out.",
    "invited": "Your account is ready: sign in with your email and the password you chose.",
}


def _safe_next(target: str, actor: CurrentActor) -> str:
    home = "/console" if actor.kind is ActorKind.STAFF else "/portal"
    # Only local paths: an open redirect would turn our sign-in page into a phishing tool.
    if not target.startswith("/") or target.startswith("//") or target.startswith("/sign-in"):
        return home
    if actor.kind is ActorKind.CLIENT and not target.startswith("/portal"):
        return home
    if actor.kind is ActorKind.STAFF and target.startswith("/portal"):
        return home
    return target


def _sign_in_page(
    *,
    token: str,
    email: str = "",
    next_path: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    return Template(
        template_name="accounts/sign_in.html",
        context={
            "csrf_token": token,
            "email": email,
            "next": next_path,
            "error": error,
            "notice": notice,
        },
        status_code=status,
        headers=headers or {},
    )


class SignInController(Controller):
    path = "/"
    include_in_schema = False

    @get("/sign-in")
    async def sign_in_page(
        self, settings: AppSettings, reason: FromQuery[str] = "", next: FromQuery[str] = ""
    ) -> Template:
        token = new_csrf_token()
        page = _sign_in_page(token=token, next_path=next, notice=SIGN_IN_REASONS.get(reason))
        page.cookies.append(_pre_session_cookie(token, settings))
        return page

    @post("/sign-in")
    async def sign_in(
        self,
        request: Request,
        db: DB,
        settings: AppSettings,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response:
        email = str(data.get("email", ""))
        next_path = str(data.get("next", ""))
        if not csrf.tokens_match(request.cookies.get(csrf.PRE_SESSION_COOKIE), data.get(csrf.CSRF_FIELD)):
            raise PermissionDeniedException(detail=csrf.MISSING_TOKEN)
        token = new_csrf_token()
        try:
            signed_in = await services.sign_in(
                db,
                email,
                str(data.get("password", "")),
                address=client_address(request),
                user_agent=request.headers.get("user-agent"),
            )
        except Throttled as exc:
            page = _sign_in_page(
                token=token,
                email=email,
                next_path=next_path,
                error=exc.detail,
                status=429,
                headers={"Retry-After": str(exc.retry_after)},
            )
            page.cookies.append(_pre_session_cookie(token, settings))
            return page
        except AuthenticationFailed as exc:
            page = _sign_in_page(token=token, email=email, next_path=next_path, error=exc.detail, status=401)
            page.cookies.append(_pre_session_cookie(token, settings))
            return page
        response = Redirect(path=_safe_next(next_path, signed_in.actor))
        response.set_cookie(
            SESSION_COOKIE,
            signed_in.session_token,
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
            max_age=int(services.SESSION_ABSOLUTE_TIMEOUT.total_seconds()),
            path="/",
        )
        response.delete_cookie(csrf.PRE_SESSION_COOKIE)
        return response

    @post("/sign-out", guards=[requires_actor])
    async def sign_out(self, request: Request, db: DB) -> Redirect:
        if token := request.cookies.get(SESSION_COOKIE):
            await services.sign_out(db, token)
        response = Redirect(path="/sign-in?reason=signedout")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _pre_session_cookie(token: str, settings: AppSettings) -> Cookie:
    return Cookie(
        key=csrf.PRE_SESSION_COOKIE,
        value=token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=3600,
        path="/sign-in",
    )


def _key_view(key, secret: str | None = None):
    view = ApiKeyView.model_validate(key)
    if secret is None:
        return view
    return IssuedApiKeyView(**view.model_dump(), secret=secret)


class AccountApiController(Controller):
    path = "/api/v1"
    tags = ["Accounts"]
    guards = [requires_actor]

    @get("/me", summary="Who the caller is and which tenants it reaches", responses=problem_responses(401))
    async def me(self, actor: CurrentActor) -> MeView:
        return MeView(
            kind=actor.kind.value,
            id=actor.id,
            display_name=actor.display_name,
            staff_role=actor.staff_role.value if actor.staff_role else None,
            client_role=actor.client_role.value if actor.client_role else None,
            tenant_ids=sorted(actor.tenant_ids),
        )

    @get(
        "/api-keys", summary="List a tenant's API keys", responses=problem_responses(400, 401, 403, 404, 422)
    )
    async def list_keys(
        self, db: DB, actor: CurrentActor, tenant_id: FromQuery[UUID | None] = None
    ) -> list[ApiKeyView]:
        tenant = _target_tenant(actor, tenant_id)
        return [_key_view(k) for k in await services.list_api_keys(db, actor, tenant)]

    @post(
        "/api-keys",
        summary="Create an API key (the secret is returned once)",
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def create_key(self, db: DB, actor: CurrentActor, data: JSONBody[ApiKeyCreate]) -> IssuedApiKeyView:
        issued = await services.issue_api_key(db, actor, _target_tenant(actor, data.tenant_id), data.name)
        return _key_view(issued.key, issued.secret)

    @get("/api-keys/{key_id:uuid}", summary="One API key", responses=problem_responses(400, 401, 403, 404))
    async def get_key(self, db: DB, actor: CurrentActor, key_id: FromPath[UUID]) -> ApiKeyView:
        return _key_view(await services.get_api_key(db, actor, key_id))

    @delete(
        "/api-keys/{key_id:uuid}",
        summary="Revoke an API key",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def revoke_key(self, db: DB, actor: CurrentActor, key_id: FromPath[UUID]) -> ApiKeyView:
        return _key_view(await services.revoke_api_key(db, actor, key_id))


def _target_tenant(actor: CurrentActor, tenant_id: UUID | None) -> UUID:
    if actor.single_tenant_id is not None:
        return tenant_id or actor.single_tenant_id
    if tenant_id is None:
        raise ValidationFailed([FieldError("tenant_id", "is required for staff users")])
    return tenant_id
