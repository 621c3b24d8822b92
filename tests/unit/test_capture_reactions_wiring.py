"""Every feature that reacts to an order's change also reacts to a batch of captured orders.

A CSV import's batch records one `OrdersCaptured` instead of an `OrderChanged` per event;
a feature subscribed to the one and not the other would silently miss imported orders.
"""

from __future__ import annotations

from orderdesk.core import events
from orderdesk.orders.timeline import OrderChanged, OrdersCaptured
from orderdesk.wiring import connect_features


def test_every_order_change_subscriber_also_handles_captured_batches():
    connect_features()
    per_order = {handler.__module__ for handler in events._handlers[OrderChanged]}
    per_batch = {handler.__module__ for handler in events._handlers[OrdersCaptured]}
    assert per_order, "no feature reacts to order changes: wiring not connected"
    assert per_order == per_batch
