"""Signing, retry timing and URL safety, without a network or a database."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest
from standardwebhooks.webhooks import Webhook

from orderdesk.integrations import delivery, signing
from orderdesk.integrations.urls import UnsafeUrl, check_syntax, check_target


def test_new_secrets_are_whsec_with_at_least_24_random_bytes():
    one, two = signing.new_secret(), signing.new_secret()
    assert one.startswith("whsec_") and one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"))) >= 24


def test_our_signature_verifies_with_the_reference_library():
    secret = signing.new_secret()
    body = b'{"type":"order.created","data":{"x":1}}'
    now = int(time.time())
    headers = signing.headers_for([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"type": "order.created", "data": {"x": 1}}
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(now)


def test_rotation_overlap_sends_two_signatures_each_valid():
    old, new = signing.new_secret(), signing.new_secret()
    body = b"{}"
    headers = signing.headers_for([new, old], "msg_2", int(time.time()), body)
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_a_tampered_body_fails():
    from standardwebhooks.webhooks import WebhookVerificationError

    secret = signing.new_secret()
    headers = signing.headers_for([secret], "msg_3", int(time.time()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


POLICY = delivery.DeliveryPolicy(
    retry_schedule=(5, 300, 1800), timeout_seconds=15, disable_after=dt.timedelta(days=5), allow_private=False
)


@pytest.mark.parametrize(("attempts", "base"), [(1, 5), (2, 300), (3, 1800)])
def test_retry_delays_follow_the_schedule_with_jitter(attempts, base):
    outcome = delivery.Outcome(500, 10, None, None)
    delays = {delivery.next_delay(attempts, POLICY, outcome).total_seconds() for _ in range(50)}
    assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
    assert len(delays) > 1  # jitter spreads retries


def test_after_the_last_retry_the_message_is_dead():
    assert delivery.next_delay(4, POLICY, delivery.Outcome(500, 1, None, None)) is None


def test_retry_after_extends_the_wait():
    outcome = delivery.Outcome(429, 1, None, None, retry_after=dt.timedelta(seconds=60))
    assert delivery.next_delay(1, POLICY, outcome) >= dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x.example.com", "https://"),
        ("http://x.example.com", "must use https"),
        ("https://", "must name a host"),
        ("https://a:b@x.example.com", "credentials"),
    ],
)
def test_syntax(url, message):
    with pytest.raises(UnsafeUrl, match=message):
        check_syntax(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.0.0.1/",
        "https://192.168.1.1/",
        "https://172.16.0.1/",
        "https://169.254.169.254/",
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://[::ffff:127.0.0.1]/",
        "https://224.0.0.1/",
    ],
)
async def test_private_targets_are_refused(url):
    with pytest.raises(UnsafeUrl):
        await check_target(url, allow_private=False)


async def test_public_literal_is_allowed_and_private_allowed_when_configured():
    await check_target("https://93.184.216.34/hook", allow_private=False)
    await check_target("http://127.0.0.1:8080/hook", allow_private=True)
