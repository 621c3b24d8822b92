"""Connects each feature's reactions to the domain events of others.

Called once by every process (web, worker, CLI, tests) before work starts, so the
same changes have the same side effects wherever they happen.
"""

from __future__ import annotations

_connected = False


def connect_features() -> None:
    """Subscribe every feature's handlers; safe to call more than once."""
    global _connected
    if _connected:
        return
    _connected = True
    from orderdesk.inventory import handlers as inventory_handlers

    inventory_handlers.connect()
    from orderdesk.invoices import handlers as invoice_handlers

    invoice_handlers.connect()
    from orderdesk.core import events
    from orderdesk.integrations import outbox
    from orderdesk.orders.timeline import OrderChanged, OrdersCaptured

    events.subscribe(OrderChanged, outbox.on_order_changed)
    events.subscribe(OrdersCaptured, outbox.on_orders_captured)
    from orderdesk.workqueue import handlers as workqueue_handlers

    workqueue_handlers.connect()
    from orderdesk.comms import auto_answer
    from orderdesk.comms import services as comms_services

    if auto_answer.after_inbound not in comms_services.INBOUND_HOOKS:
        comms_services.INBOUND_HOOKS.append(auto_answer.after_inbound)
