"""The client's own people: invitations, roles and disabling, managed by the client's admins.

An invitation is a single-use link that expires after seven days; only the
SHA-256 of its token is stored. The invitee chooses their name and password on
the link's page and the account is created, bound to the tenant, in the same
transaction that spends the invitation, so a link can never make two accounts.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from orderdesk.accounts import tokens
from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientMembership, ClientRole, User, UserKind, WebSession
from orderdesk.accounts.passwords import hash_password, password_problem
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.core.validation import Collector
from orderdesk.portal.models import ClientInvitation
from orderdesk.tenants.models import Tenant

INVITATION_LIFETIME = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class PortalUser:
    id: UUID
    email: str
    display_name: str
    role: str
    is_active: bool
    last_sign_in_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: ClientInvitation
    token: str  # shown once, in the link


@dataclass(frozen=True, slots=True)
class InvitationPreview:
    tenant_name: str
    email: str
    role: str
    expires_at: dt.datetime


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _require_client_admin(actor: Actor) -> UUID:
    tenant_id = actor.single_tenant_id
    if actor.kind is not ActorKind.CLIENT or actor.client_role is not ClientRole.ADMIN or tenant_id is None:
        raise PermissionDenied("Only the client's administrators can manage users")
    return tenant_id


def _role(value: str) -> ClientRole:
    try:
        return ClientRole(value)
    except ValueError:
        raise ValidationFailed([FieldError("role", "must be viewer or admin")]) from None


async def list_users(db: Database, actor: Actor) -> list[PortalUser]:
    """The client users of the actor's tenant, by name. Raises PermissionDenied for non-clients."""
    tenant_id = actor.single_tenant_id
    if actor.kind is not ActorKind.CLIENT or tenant_id is None:
        raise PermissionDenied("The portal's user list is for client users")
    async with db.transaction(actor.scope) as session:
        rows = await session.execute(
            select(User, ClientMembership.role)
            .join(ClientMembership, ClientMembership.user_id == User.id)
            .where(ClientMembership.tenant_id == tenant_id)
            .order_by(func.lower(User.display_name))
        )
        return [
            PortalUser(u.id, u.email, u.display_name, role.value, u.is_active, u.last_sign_in_at)
            for u, role in rows
        ]


async def list_pending_invitations(db: Database, actor: Actor, *, now: dt.datetime | None = None):
    """Invitations neither used, revoked nor expired, newest first. Raises PermissionDenied."""
    tenant_id = _require_client_admin(actor)
    now = now or utcnow()
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(ClientInvitation)
            .where(
                ClientInvitation.tenant_id == tenant_id,
                ClientInvitation.accepted_at.is_(None),
                ClientInvitation.revoked_at.is_(None),
                ClientInvitation.expires_at > now,
            )
            .order_by(ClientInvitation.created_at.desc())
        )
        return list(rows)


async def invite(
    db: Database, actor: Actor, email: str, role: str, *, now: dt.datetime | None = None
) -> IssuedInvitation:
    """Invite a colleague; the link (with its token) is returned once.

    Raises PermissionDenied (not a client admin), ValidationFailed (bad email or
    role), Conflict (an account with that email exists).
    """
    tenant_id = _require_client_admin(actor)
    check = Collector()
    email = check.email("email", email or "")
    check.raise_if_any()
    chosen = _role(role)
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    invitation = ClientInvitation(
        tenant_id=tenant_id,
        id=new_id(),
        email=email,
        role=chosen,
        token_hash=tokens.digest(token),
        invited_by=actor.id,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    async with db.transaction(actor.scope) as session:
        taken = await session.scalar(select(User.id).where(func.lower(User.email) == email))
        if taken is not None:
            raise Conflict(f"An account with the email {email} already exists")
        session.add(invitation)
    return IssuedInvitation(invitation=invitation, token=token)


async def revoke_invitation(db: Database, actor: Actor, invitation_id: UUID) -> None:
    """Raises PermissionDenied, NotFound (also for one already used or revoked)."""
    tenant_id = _require_client_admin(actor)
    async with db.transaction(actor.scope) as session:
        result = await session.execute(
            update(ClientInvitation)
            .where(
                ClientInvitation.tenant_id == tenant_id,
                ClientInvitation.id == invitation_id,
                ClientInvitation.accepted_at.is_(None),
                ClientInvitation.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )
        if result.rowcount == 0:
            raise NotFound("Invitation")


async def _all_tenants_scope(session_db: Database) -> Scope:
    # The link's holder has no session yet: the token itself picks the one invitation,
    # looked up by its hash across tenants, and everything after runs in its tenant only.
    async with session_db.transaction(Scope()) as session:
        return Scope(tenant_ids=frozenset(await session.scalars(select(Tenant.id).where(Tenant.is_active))))


def _usable(invitation: ClientInvitation | None, now: dt.datetime) -> ClientInvitation:
    if invitation is None or invitation.revoked_at is not None:
        raise NotFound("Invitation")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation has already been used; sign in instead")
    if invitation.expires_at <= now:
        raise Conflict("This invitation has expired; ask your administrator for a new one")
    return invitation


async def preview_invitation(
    db: Database, token: str, *, now: dt.datetime | None = None
) -> InvitationPreview:
    """What the link offers. Raises NotFound (unknown or revoked), Conflict (used or expired)."""
    now = now or utcnow()
    scope = await _all_tenants_scope(db)
    async with db.transaction(scope) as session:
        invitation = _usable(
            await session.scalar(
                select(ClientInvitation).where(ClientInvitation.token_hash == tokens.digest(token or ""))
            ),
            now,
        )
        tenant = await session.get(Tenant, invitation.tenant_id)
        return InvitationPreview(
            tenant_name=tenant.name if tenant else "",
            email=invitation.email,
            role=invitation.role.value,
            expires_at=invitation.expires_at,
        )


async def accept_invitation(
    db: Database, token: str, display_name: str, password: str, *, now: dt.datetime | None = None
) -> User:
    """Spend the invitation: create the client user with the chosen name and password.

    Raises NotFound, Conflict (used, expired, or the email taken meanwhile),
    ValidationFailed (name or password).
    """
    check = Collector()
    display_name = check.text("display_name", display_name or "", max_length=200)
    if problem := password_problem(password or ""):
        check.add("password", problem)
    check.raise_if_any()
    now = now or utcnow()
    scope = await _all_tenants_scope(db)
    try:
        async with db.transaction(scope) as session:
            invitation = _usable(
                await session.scalar(
                    select(ClientInvitation)
                    .where(ClientInvitation.token_hash == tokens.digest(token or ""))
                    .with_for_update()
                ),
                now,
            )
            user = User(
                id=new_id(),
                email=invitation.email,
                display_name=display_name,
                password_hash=hash_password(password),
                kind=UserKind.CLIENT,
                staff_role=None,
            )
            session.add(user)
            await session.flush()
            session.add(
                ClientMembership(tenant_id=invitation.tenant_id, user_id=user.id, role=invitation.role)
            )
            invitation.accepted_at = now
            invitation.accepted_user_id = user.id
    except IntegrityError as exc:
        raise Conflict(f"An account with the email {invitation.email} already exists") from exc
    return user


async def _membership(session, tenant_id: UUID, user_id: UUID) -> tuple[ClientMembership, User]:
    row = (
        await session.execute(
            select(ClientMembership, User)
            .join(User, User.id == ClientMembership.user_id)
            .where(ClientMembership.tenant_id == tenant_id, ClientMembership.user_id == user_id)
            .with_for_update(of=ClientMembership)
        )
    ).first()
    if row is None:
        raise NotFound("User")
    return row[0], row[1]


async def set_user_active(db: Database, actor: Actor, user_id: UUID, active: bool) -> PortalUser:
    """Disable (signing them out everywhere) or re-enable one of the tenant's users.

    Raises PermissionDenied, NotFound (not a user of this tenant), Conflict (oneself).
    """
    tenant_id = _require_client_admin(actor)
    async with db.transaction(actor.scope) as session:
        membership, user = await _membership(session, tenant_id, user_id)
        if user_id == actor.id:
            raise Conflict("You cannot disable your own account")
        user.is_active = active
        if not active:
            await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return PortalUser(
            user.id,
            user.email,
            user.display_name,
            membership.role.value,
            user.is_active,
            user.last_sign_in_at,
        )


async def change_role(db: Database, actor: Actor, user_id: UUID, role: str) -> PortalUser:
    """Make one of the tenant's users a viewer or an admin.

    Raises PermissionDenied, NotFound, ValidationFailed (unknown role), Conflict
    (one's own role: another admin must change it, so the tenant always keeps one).
    """
    tenant_id = _require_client_admin(actor)
    async with db.transaction(actor.scope) as session:
        membership, user = await _membership(session, tenant_id, user_id)
        chosen = _role(role)
        if user_id == actor.id:
            raise Conflict("You cannot change your own role; ask another administrator")
        membership.role = chosen
        return PortalUser(
            user.id, user.email, user.display_name, chosen.value, user.is_active, user.last_sign_in_at
        )
