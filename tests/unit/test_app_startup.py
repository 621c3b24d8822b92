"""What the served app does once at start-up."""

from __future__ import annotations

import gc

import pytest
from litestar import Litestar

from orderdesk.app import _freeze_startup_objects


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_start_up_objects_are_kept_out_of_full_collections(unfrozen):
    survivors = [[n] for n in range(1000)]  # long-lived containers, as routes and caches are
    assert gc.get_freeze_count() == 0

    await _freeze_startup_objects(Litestar([]))

    assert gc.get_freeze_count() >= len(survivors)
    walked_by_a_full_collection = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(s) in walked_by_a_full_collection for s in survivors)
