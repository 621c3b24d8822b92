"""Jinja setup shared by every page: filters and globals."""

from __future__ import annotations

import datetime as dt

from litestar.plugins.jinja import JinjaTemplateEngine

from orderdesk.core.money import format_minor

HTMX_VERSION = "2.0.11"


def _datetime(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def configure_templates(engine: JinjaTemplateEngine) -> None:
    engine.engine.globals["htmx_src"] = f"/static/vendor/htmx-{HTMX_VERSION}.min.js"
    engine.engine.filters["datetime"] = _datetime
    # Amounts in minor units with their currency: {{ order.total_minor | money(order.currency) }}.
    engine.engine.filters["money"] = format_minor
