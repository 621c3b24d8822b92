"""Dependencies shared by controllers: the database and the current actor."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from orderdesk.accounts.actors import Actor
from orderdesk.core.db import Database
from orderdesk.settings import Settings
from orderdesk.web.auth import request_database
from orderdesk.web.guards import current_actor


def provide_db(request: Request) -> Database:
    return request_database(request.scope)


def provide_settings(state: State) -> Settings:
    return state.settings


def provide_actor(request: Request) -> Actor:
    return current_actor(request)


DEPENDENCIES = {
    "db": Provide(provide_db, sync_to_thread=False),
    "actor": Provide(provide_actor, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
}

# Annotations for handler parameters; the parameter name picks the dependency.
DB = NamedDependency[Database]
CurrentActor = NamedDependency[Actor]
AppSettings = NamedDependency[Settings]
