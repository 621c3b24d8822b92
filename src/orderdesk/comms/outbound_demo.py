"""Demo data for the outbound side: a from-address, a where-is-my-order template and two macros per tenant.

Safe to run on every `orderdesk demo` start: what exists already (by name) is left alone.
"""

from __future__ import annotations

from sqlalchemy import select

from orderdesk.comms import outbound
from orderdesk.comms.outbound_models import AgentMacro, EmailTemplate
from orderdesk.comms.services import configure_comms, settings_in
from orderdesk.core.db import Database
from orderdesk.tenants import services as tenants

WISMO_SUBJECT = "Your order {{ order.reference }}"
WISMO_BODY = """Hello {{ customer.first_name }},

thank you for your message. Your order {{ order.reference }} is {{ tracking.status_label }}.
{%- if tracking_link %} You can follow the parcel here: {{ tracking_link }}{% endif %}
{%- if tracking_page %} Your order's page: {{ tracking_page }}{% endif %}

Kind regards,
{{ agent.name }}
{{ tenant.from_name }}
"""
MACROS = (
    outbound.MacroFields(
        name="Answered: close",
        insert_text="Is there anything else we can do for you?",
        set_outcome="resolved",
    ),
    outbound.MacroFields(
        name="Late delivery", insert_text="We are sorry for the wait.", add_tag="late-delivery"
    ),
)


async def seed_outbound(db: Database, slugs: list[str]) -> None:
    system = await tenants.system_actor(db)
    for slug in slugs:
        tenant = await tenants.get_tenant_by_slug(db, system, slug)
        async with db.transaction(system.scope) as session:
            current = await settings_in(session, tenant.id)
            template_names = set(
                (
                    await session.scalars(
                        select(EmailTemplate.name).where(EmailTemplate.tenant_id == tenant.id)
                    )
                ).all()
            )
            macro_names = set(
                (
                    await session.scalars(select(AgentMacro.name).where(AgentMacro.tenant_id == tenant.id))
                ).all()
            )
        if current is None or not current.from_address:
            await configure_comms(db, system, tenant.id, from_address=f"support@{slug}.example.com")
        if "Where is my order" not in template_names:
            template = await outbound.create_template(
                db,
                system,
                tenant.id,
                outbound.TemplateFields(name="Where is my order", subject=WISMO_SUBJECT, body=WISMO_BODY),
            )
            await outbound.configure_outbound(
                db, system, tenant.id, outbound.OutboundSettingsFields(auto_answer_template_id=template.id)
            )
        for macro in MACROS:
            if macro.name not in macro_names:
                await outbound.create_macro(db, system, tenant.id, macro)
