"""Route guards: the role checks, declared next to each controller.

They are coroutines although they never wait: Litestar runs a plain function guard in
a worker thread, a thread hop (and a wait for the GIL) on every request.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole, StaffRole


def current_actor(connection: ASGIConnection) -> Actor:
    actor = connection.scope.get("user")
    if actor is None:
        failure = connection.scope.get("state", {}).get("auth_failure")
        raise NotAuthorizedException(detail=failure.detail if failure else "You are not signed in")
    return actor


async def requires_actor(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    current_actor(connection)


async def requires_staff(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if current_actor(connection).kind is not ActorKind.STAFF:
        raise PermissionDeniedException(
            detail="The console is for operations staff; client users sign in to the portal"
        )


async def requires_staff_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    actor = current_actor(connection)
    if actor.kind is not ActorKind.STAFF or actor.staff_role is not StaffRole.ADMIN:
        raise PermissionDeniedException(detail="Only administrators can do this")


async def requires_client(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if current_actor(connection).kind is not ActorKind.CLIENT:
        raise PermissionDeniedException(detail="The portal is for client users")


async def requires_client_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    actor = current_actor(connection)
    if actor.kind is not ActorKind.CLIENT or actor.client_role is not ClientRole.ADMIN:
        raise PermissionDeniedException(detail="Only the client's administrators can do this")
