"""Actors: who is acting, and the tenants that decides."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from uuid import UUID

from orderdesk.accounts.models import ClientRole, StaffRole
from orderdesk.core.tenancy import Scope


class ActorKind(enum.StrEnum):
    STAFF = "staff"
    CLIENT = "client"
    API_KEY = "api_key"
    SYSTEM = "system"  # a worker or the CLI acting for the platform
    CUSTOMER = "customer"  # an end customer on the public tracking page, for one order only


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: UUID
    display_name: str
    tenant_ids: frozenset[UUID]
    staff_role: StaffRole | None = None
    client_role: ClientRole | None = None
    # Web sessions carry a CSRF token; API keys do not need one.
    csrf_token: str | None = None
    session_hash: str | None = None

    @property
    def scope(self) -> Scope:
        user_id = self.id if self.kind in (ActorKind.STAFF, ActorKind.CLIENT) else None
        return Scope(tenant_ids=self.tenant_ids, user_id=user_id)

    @property
    def is_staff(self) -> bool:
        return self.kind is ActorKind.STAFF

    @property
    def is_admin(self) -> bool:
        return self.staff_role is StaffRole.ADMIN

    @property
    def single_tenant_id(self) -> UUID | None:
        """The tenant of a client user or API key (each is bound to exactly one)."""
        if self.kind in (ActorKind.CLIENT, ActorKind.API_KEY) and len(self.tenant_ids) == 1:
            return next(iter(self.tenant_ids))
        return None

    def label(self) -> str:
        return f"{self.kind.value}:{self.id}"
