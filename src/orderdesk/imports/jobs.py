"""Housekeeping for imports: ones whose process is gone are marked interrupted."""

from __future__ import annotations

from typing import Any

from orderdesk.core.tenancy import Scope
from orderdesk.imports.heartbeat import sweep_interrupted_imports
from orderdesk.tenants.services import all_tenant_ids


async def sweep_interrupted_imports_job(ctx: dict[str, Any]) -> dict[str, int]:
    """Reading an import marks it too; the sweep makes lists and reports right for nobody looking."""
    db = ctx["db"]
    return {"interrupted": await sweep_interrupted_imports(db, Scope(tenant_ids=await all_tenant_ids(db)))}
