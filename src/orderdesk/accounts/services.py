"""Sign-in, sessions, API keys and user administration.

Sessions: a new random id at every sign-in; idle expiry 30 minutes, absolute 12
hours. Sign-in is throttled per account and per client address, counting recent
failures in PostgreSQL so the limits hold across every web process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts import tokens
from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import (
    AgentAssignment,
    ApiKey,
    ClientMembership,
    ClientRole,
    SignInFailure,
    StaffRole,
    User,
    UserKind,
    WebSession,
)
from orderdesk.accounts.passwords import hash_password, password_problem, verify_password
from orderdesk.core.db import Database
from orderdesk.core.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    Throttled,
)
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope, apply_scope
from orderdesk.core.validation import Collector
from orderdesk.tenants.models import Tenant

SESSION_IDLE_TIMEOUT = dt.timedelta(minutes=30)
SESSION_ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
# Writing last_seen on every request would cost a write per page; a minute is precise enough.
SESSION_TOUCH_INTERVAL = dt.timedelta(seconds=60)
KEY_TOUCH_INTERVAL = dt.timedelta(seconds=60)

# (subject kind, window, failures allowed in the window)
SIGN_IN_LIMITS = (
    ("account", dt.timedelta(minutes=15), 10),
    ("account", dt.timedelta(hours=1), 100),
    ("address", dt.timedelta(minutes=15), 50),
)
BAD_CREDENTIALS = "Email or password is incorrect"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_token: str
    actor: Actor


class SessionExpired(AuthenticationFailed):
    """The session existed but ran past its idle or absolute limit."""


# ---------------------------------------------------------------- sign-in and sessions


def _subjects(email: str, address: str | None) -> dict[str, str]:
    subjects = {"account": f"account:{email.strip().lower()}"}
    if address:
        subjects["address"] = f"address:{address}"
    return subjects


async def _check_throttle(db: Database, subjects: dict[str, str], now: dt.datetime) -> None:
    async with db.transaction(Scope()) as session:
        for kind, window, allowed in SIGN_IN_LIMITS:
            subject = subjects.get(kind)
            if subject is None:
                continue
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(SignInFailure.failed_at)).where(
                        SignInFailure.subject == subject, SignInFailure.failed_at > now - window
                    )
                )
            ).one()
            if count >= allowed:
                retry_after = max(1, int((oldest + window - now).total_seconds()) + 1)
                raise Throttled(
                    f"Too many failed sign-in attempts for this {kind}; "
                    f"try again in {retry_after // 60 + 1} minutes",
                    retry_after=retry_after,
                )


async def _record_failure(db: Database, subjects: dict[str, str], now: dt.datetime) -> None:
    async with db.transaction(Scope()) as session:
        session.add_all(SignInFailure(subject=s, failed_at=now) for s in subjects.values())


async def sign_in(
    db: Database,
    email: str,
    password: str,
    *,
    address: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> SignedIn:
    """Check credentials and open a new session.

    Raises Throttled when too many recent failures came from this account or
    address, AuthenticationFailed for a wrong email or password or a disabled user
    (one message for all, so accounts cannot be discovered).
    """
    now = now or utcnow()
    subjects = _subjects(email, address)
    await _check_throttle(db, subjects, now)

    async with db.transaction(Scope()) as session:
        user = await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or not (user and user.is_active):
        await _record_failure(db, subjects, now)
        raise AuthenticationFailed(BAD_CREDENTIALS)

    token = tokens.new_session_token()
    async with db.transaction(Scope(user_id=user.id)) as session:
        session.add(
            WebSession(
                id_hash=tokens.digest(token),
                user_id=user.id,
                csrf_token=tokens.new_csrf_token(),
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_ABSOLUTE_TIMEOUT,
                ip_address=address,
                user_agent=(user_agent or "")[:300] or None,
            )
        )
        await session.execute(update(User).where(User.id == user.id).values(last_sign_in_at=now))
        await session.execute(delete(SignInFailure).where(SignInFailure.subject == subjects["account"]))
    actor = await _load_actor(db, user, tokens.digest(token))
    return SignedIn(session_token=token, actor=actor)


async def _actor_tenants(session, user: User) -> frozenset[UUID]:
    if user.kind is UserKind.STAFF and user.staff_role is StaffRole.ADMIN:
        rows = await session.scalars(select(Tenant.id).where(Tenant.is_active))
        return frozenset(rows)
    if user.kind is UserKind.STAFF:
        rows = await session.scalars(
            select(AgentAssignment.tenant_id)
            .join(Tenant, Tenant.id == AgentAssignment.tenant_id)
            .where(AgentAssignment.user_id == user.id, Tenant.is_active)
        )
        return frozenset(rows)
    rows = await session.scalars(
        select(ClientMembership.tenant_id)
        .join(Tenant, Tenant.id == ClientMembership.tenant_id)
        .where(ClientMembership.user_id == user.id, Tenant.is_active)
    )
    return frozenset(rows)


async def _load_actor(db: Database, user: User, session_hash: str) -> Actor:
    async with db.transaction(Scope(user_id=user.id)) as session:
        tenant_ids = await _actor_tenants(session, user)
        csrf = await session.scalar(select(WebSession.csrf_token).where(WebSession.id_hash == session_hash))
        client_role = None
        if user.kind is UserKind.CLIENT:
            client_role = await session.scalar(
                select(ClientMembership.role).where(ClientMembership.user_id == user.id)
            )
    return Actor(
        kind=ActorKind.STAFF if user.kind is UserKind.STAFF else ActorKind.CLIENT,
        id=user.id,
        display_name=user.display_name,
        tenant_ids=tenant_ids,
        staff_role=user.staff_role,
        client_role=client_role,
        csrf_token=csrf,
        session_hash=session_hash,
    )


async def resolve_session(db: Database, token: str, *, now: dt.datetime | None = None) -> Actor:
    """The actor behind a session cookie.

    Raises SessionExpired when the session ran past its idle or absolute limit (it
    is deleted), AuthenticationFailed when it is unknown or its user is disabled.
    """
    now = now or utcnow()
    session_hash = tokens.digest(token)
    async with db.transaction(Scope()) as session:
        row = (
            await session.execute(
                select(WebSession, User)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.id_hash == session_hash)
            )
        ).one_or_none()
        if row is None:
            raise AuthenticationFailed("You are not signed in")
        web_session, user = row
        if now >= web_session.expires_at or now - web_session.last_seen_at >= SESSION_IDLE_TIMEOUT:
            await session.execute(delete(WebSession).where(WebSession.id_hash == session_hash))
            raise_expired = True
        else:
            raise_expired = False
            if now - web_session.last_seen_at >= SESSION_TOUCH_INTERVAL:
                web_session.last_seen_at = now
    if raise_expired:
        raise SessionExpired("Your session has expired; please sign in again")
    if not user.is_active:
        raise AuthenticationFailed("This account is disabled")
    return await _load_actor(db, user, session_hash)


async def sign_out(db: Database, token: str) -> None:
    """End the session behind `token`; unknown tokens are ignored."""
    async with db.transaction(Scope()) as session:
        await session.execute(delete(WebSession).where(WebSession.id_hash == tokens.digest(token)))


# ---------------------------------------------------------------- API keys


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str  # shown once, never stored


@dataclass(frozen=True, slots=True)
class ApiKeyCaller:
    actor: Actor
    # Still open, scoped to the key's tenant: the request's work may continue it (see
    # Database.continuing). None when the key's last-used time was written: that
    # transaction is committed on its own, whatever the request then does.
    transaction: AsyncSession | None


# The key and whether its tenant is active, in one round trip (row-level security lets
# the caller see this key's row, and its tenant's, by the hash alone).
_KEY_AND_TENANT = (
    select(ApiKey.id, ApiKey.tenant_id, ApiKey.name, ApiKey.last_used_at, ApiKey.revoked_at, Tenant.is_active)
    .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
    .where(ApiKey.secret_hash == bindparam("secret_hash"))
)


async def open_api_key_transaction(
    db: Database, secret: str, *, now: dt.datetime | None = None
) -> ApiKeyCaller:
    """The tenant actor behind a bearer key, and the transaction that found it.

    The caller closes `transaction` (or hands it to the request's work). At most once
    a minute per key the key's last-used time is written and committed at once, and
    no transaction is handed on.

    Raises AuthenticationFailed when the key is malformed, unknown or revoked, or its
    tenant is disabled.
    """
    now = now or utcnow()
    if not tokens.looks_like_api_key(secret):
        raise AuthenticationFailed("The API key is malformed")
    secret_hash = tokens.digest(secret)
    session = await db.begin(Scope(api_key_hash=secret_hash))
    try:
        key = (await session.execute(_KEY_AND_TENANT, {"secret_hash": secret_hash})).first()
        if key is None:
            raise AuthenticationFailed("The API key is not valid")
        if key.revoked_at is not None:
            raise AuthenticationFailed("The API key has been revoked")
        if not key.is_active:
            raise AuthenticationFailed("The API key's tenant is disabled")
        actor = Actor(
            kind=ActorKind.API_KEY,
            id=key.id,
            display_name=f"API key {key.name}",
            tenant_ids=frozenset({key.tenant_id}),
        )
        # From here on the transaction sees the key's tenant, as the actor's own would;
        # writing the key also needs it (the policy's WITH CHECK demands it).
        await apply_scope(session, actor.scope)
        if key.last_used_at is None or now - key.last_used_at >= KEY_TOUCH_INTERVAL:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.tenant_id == key.tenant_id, ApiKey.id == key.id)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
            await session.close()
            return ApiKeyCaller(actor, None)
    except BaseException:
        await session.close()
        raise
    return ApiKeyCaller(actor, session)


async def resolve_api_key(db: Database, secret: str, *, now: dt.datetime | None = None) -> Actor:
    """The tenant actor behind a bearer key.

    Raises AuthenticationFailed when the key is malformed, unknown or revoked.
    """
    caller = await open_api_key_transaction(db, secret, now=now)
    if caller.transaction is not None:
        await caller.transaction.close()
    return caller.actor


def _require_key_manager(actor: Actor, tenant_id: UUID) -> None:
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    allowed = (
        actor.kind is ActorKind.SYSTEM
        or actor.is_admin
        or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)
    )
    if not allowed:
        raise PermissionDenied("Only administrators can manage API keys")


async def issue_api_key(db: Database, actor: Actor, tenant_id: UUID, name: str) -> IssuedKey:
    """Create a key for `tenant_id`; the secret is in the result and nowhere else.

    Raises NotFound for a tenant outside the actor's scope, PermissionDenied for
    non-administrators, ValidationFailed for a bad name.
    """
    check = Collector()
    name = check.text("name", name, max_length=100)
    check.raise_if_any()
    _require_key_manager(actor, tenant_id)
    secret = tokens.new_api_key()
    key = ApiKey(
        tenant_id=tenant_id,
        id=new_id(),
        name=name,
        prefix=secret[:12],
        secret_hash=tokens.digest(secret),
        created_by=actor.id if actor.kind in (ActorKind.STAFF, ActorKind.CLIENT) else None,
    )
    async with db.transaction(actor.scope) as session:
        session.add(key)
    return IssuedKey(key=key, secret=secret)


async def list_api_keys(db: Database, actor: Actor, tenant_id: UUID) -> list[ApiKey]:
    """Keys of one tenant, newest first. Raises NotFound, PermissionDenied."""
    _require_key_manager(actor, tenant_id)
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at.desc())
        )
        return list(rows)


async def get_api_key(db: Database, actor: Actor, key_id: UUID) -> ApiKey:
    """One key within the actor's tenants. Raises NotFound (also for other tenants' keys)."""
    async with db.transaction(actor.scope) as session:
        key = await session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id.in_(actor.tenant_ids))
        )
    if key is None:
        raise NotFound("API key")
    _require_key_manager(actor, key.tenant_id)
    return key


async def revoke_api_key(db: Database, actor: Actor, key_id: UUID) -> ApiKey:
    """Revoke a key; revoking twice is harmless. Raises NotFound, PermissionDenied."""
    key = await get_api_key(db, actor, key_id)
    if key.revoked_at is None:
        async with db.transaction(actor.scope) as session:
            key.revoked_at = utcnow()
            await session.execute(
                update(ApiKey)
                .where(ApiKey.tenant_id == key.tenant_id, ApiKey.id == key.id)
                .values(revoked_at=key.revoked_at)
            )
    return key


# ---------------------------------------------------------------- user administration


async def _tenants_by_slug(session, slugs: list[str]) -> dict[str, Tenant]:
    rows = await session.scalars(select(Tenant).where(Tenant.slug.in_(slugs)))
    return {t.slug: t for t in rows}


async def create_staff_user(
    db: Database,
    actor: Actor,
    *,
    email: str,
    display_name: str,
    password: str,
    role: StaffRole,
    tenant_slugs: list[str],
    languages: list[str] | None = None,
    channels: list[str] | None = None,
    task_kinds: list[str] | None = None,
) -> User:
    """Create an agent, lead or admin, assigned to the named tenants.

    Raises PermissionDenied unless the actor is an admin (or the system),
    ValidationFailed for bad fields or unknown tenants, Conflict for a taken email.
    """
    if not (actor.kind is ActorKind.SYSTEM or actor.is_admin):
        raise PermissionDenied("Only administrators can create staff users")
    check = Collector()
    email = check.email("email", email)
    display_name = check.text("display_name", display_name, max_length=200)
    if problem := password_problem(password):
        check.add("password", problem)
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        tenants = await _tenants_by_slug(session, tenant_slugs)
        missing = [s for s in tenant_slugs if s not in tenants]
        if missing:
            check.add("tenants", f"unknown tenant(s): {', '.join(missing)}")
            check.raise_if_any()
    user = User(
        id=new_id(),
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        kind=UserKind.STAFF,
        staff_role=role,
    )
    scope = Scope(tenant_ids=frozenset(t.id for t in tenants.values()))
    try:
        async with db.transaction(scope) as session:
            session.add(user)
            await session.flush()
            session.add_all(
                AgentAssignment(
                    tenant_id=t.id,
                    user_id=user.id,
                    languages=languages or [],
                    channels=channels or [],
                    task_kinds=task_kinds or [],
                )
                for t in tenants.values()
            )
    except IntegrityError as exc:
        raise Conflict(f"A user with email {email} already exists") from exc
    return user


async def create_client_user(
    db: Database,
    actor: Actor,
    *,
    email: str,
    display_name: str,
    password: str,
    tenant_id: UUID,
    role: ClientRole,
) -> User:
    """Create a portal user bound to one tenant.

    Raises NotFound for a tenant outside the actor's scope, PermissionDenied unless
    the actor is a staff admin, the system or that tenant's client admin,
    ValidationFailed for bad fields, Conflict for a taken email.
    """
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    allowed = (
        actor.kind is ActorKind.SYSTEM
        or actor.is_admin
        or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)
    )
    if not allowed:
        raise PermissionDenied("Only administrators can create client users")
    check = Collector()
    email = check.email("email", email)
    display_name = check.text("display_name", display_name, max_length=200)
    if problem := password_problem(password):
        check.add("password", problem)
    check.raise_if_any()
    user = User(
        id=new_id(),
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        kind=UserKind.CLIENT,
        staff_role=None,
    )
    try:
        async with db.transaction(Scope(tenant_ids=frozenset({tenant_id}))) as session:
            session.add(user)
            await session.flush()
            session.add(ClientMembership(tenant_id=tenant_id, user_id=user.id, role=role))
    except IntegrityError as exc:
        raise Conflict(f"A user with email {email} already exists") from exc
    return user
