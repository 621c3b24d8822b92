"""Signed tracking links: what is signed reads back, anything else is refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from orderdesk.tracking import links

SECRET = "unit-test-secret-" + "z" * 32
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_a_signed_token_reads_back_its_tenant_order_and_expiry():
    tenant, order = uuid.uuid4(), uuid.uuid4()
    token = links.sign(SECRET, tenant, order, NOW + dt.timedelta(days=1))
    link = links.verify(SECRET, token)
    assert (link.tenant_id, link.order_id) == (tenant, order)
    assert link.expires_at == NOW + dt.timedelta(days=1)
    assert not link.expired(NOW) and link.expired(NOW + dt.timedelta(days=1))
    # URL-safe as it is: no padding, no characters a path would need to escape.
    assert token.replace("-", "").replace("_", "").isalnum()


def test_every_single_character_change_is_refused():
    token = links.sign(SECRET, uuid.uuid4(), uuid.uuid4(), NOW)
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(links.BadLink):
            links.verify(SECRET, changed)


@pytest.mark.parametrize("token", ["", "abc", "x" * 200, "!" * 71, "====" * 18])
def test_garbage_is_refused(token):
    with pytest.raises(links.BadLink):
        links.verify(SECRET, token)


def test_another_secret_does_not_verify():
    token = links.sign(SECRET, uuid.uuid4(), uuid.uuid4(), NOW)
    with pytest.raises(links.BadLink):
        links.verify("another-" + SECRET, token)


def test_the_url_helper_builds_an_absolute_link_for_emails():
    tenant, order = uuid.uuid4(), uuid.uuid4()
    url = links.tracking_url("https://desk.example.com/", SECRET, tenant, order, now=NOW)
    assert url.startswith("https://desk.example.com/track/o/")
    link = links.verify(SECRET, url.rsplit("/", 1)[1])
    assert link.order_id == order and link.expires_at == NOW + links.EMAIL_LINK_LIFETIME
    with pytest.raises(ValueError):
        links.tracking_url("javascript:alert(1)", SECRET, tenant, order)
