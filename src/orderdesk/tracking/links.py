"""Signed tracking links: the order's tenant, the order and an expiry, under an HMAC.

A link is `/track/o/<token>`, where the token is the URL-safe base64 of

    version (1 byte) | tenant id (16) | order id (16) | expiry, Unix seconds (4) | MAC (16)

and the MAC is HMAC-SHA256 over everything before it, truncated to 128 bits, with
a key derived from the application secret for this one purpose (so a MAC made
here can never be mistaken for one made elsewhere with the same secret).

Why a MAC rather than a random token per order stored in a table: links are made
on demand (each outbound email, each successful lookup) without a write, carry
their own expiry, and need no row per order. The price is that one link cannot be
revoked alone; rotating `ORDERDESK_SECRET_KEY` revokes them all. A tracking link
shows one order's progress and lets its customer write to us or ask for a return,
so expiry is the control that matters.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import struct
from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

VERSION = 1
_LAYOUT = struct.Struct(">B16s16sI")
_MAC_BYTES = 16
_TOKEN_BYTES = _LAYOUT.size + _MAC_BYTES
_PURPOSE = b"orderdesk/tracking-link/v1"
# Links in outbound emails outlive delivery and the usual return window.
EMAIL_LINK_LIFETIME = dt.timedelta(days=120)
# A lookup by number and email opens a link for a day: long enough for a visit, not a bookmark.
LOOKUP_LINK_LIFETIME = dt.timedelta(hours=24)
PATH_PREFIX = "/track/o/"


@dataclass(frozen=True, slots=True)
class TrackingLink:
    tenant_id: UUID
    order_id: UUID
    expires_at: dt.datetime

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires_at


class BadLink(Exception):
    """The token was not made by us (tampered, truncated, another key or version)."""


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def sign(secret_key: str, tenant_id: UUID, order_id: UUID, expires_at: dt.datetime) -> str:
    """The token of a link to `order_id` of `tenant_id`, valid until `expires_at`."""
    seconds = int(expires_at.timestamp())
    if not 0 < seconds < 2**32:
        raise ValueError("expiry out of range")
    payload = _LAYOUT.pack(VERSION, tenant_id.bytes, order_id.bytes, seconds)
    mac = hmac.new(_key(secret_key), payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def verify(secret_key: str, token: str) -> TrackingLink:
    """Read a token back. Raises BadLink unless we signed it; expiry is the caller's to check."""
    if not 40 <= len(token) <= 120:
        raise BadLink("wrong length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadLink("not base64") from None
    if len(raw) != _TOKEN_BYTES:
        raise BadLink("wrong length")
    # One spelling per token: a last character differing only in its unused bits is refused.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise BadLink("not canonical")
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    expected = hmac.new(_key(secret_key), payload, hashlib.sha256).digest()[:_MAC_BYTES]
    # Compared in constant time: a byte-by-byte early exit would let a forger learn the MAC.
    if not hmac.compare_digest(mac, expected):
        raise BadLink("bad signature")
    version, tenant, order, seconds = _LAYOUT.unpack(payload)
    if version != VERSION:
        raise BadLink("unknown version")
    return TrackingLink(UUID(bytes=tenant), UUID(bytes=order), dt.datetime.fromtimestamp(seconds, dt.UTC))


def tracking_path(
    secret_key: str,
    tenant_id: UUID,
    order_id: UUID,
    *,
    lifetime: dt.timedelta = EMAIL_LINK_LIFETIME,
    now: dt.datetime | None = None,
) -> str:
    """The site-relative path of a fresh tracking link."""
    now = now or dt.datetime.now(dt.UTC)
    return PATH_PREFIX + quote(sign(secret_key, tenant_id, order_id, now + lifetime), safe="")


def tracking_url(
    base_url: str,
    secret_key: str,
    tenant_id: UUID,
    order_id: UUID,
    *,
    lifetime: dt.timedelta = EMAIL_LINK_LIFETIME,
    now: dt.datetime | None = None,
) -> str:
    """The absolute tracking link to put in an outbound email, e.g. `https://desk.example.com/track/o/…`.

    `base_url` is where customers reach this deployment (scheme and host, no trailing path).
    """
    if not base_url.startswith(("https://", "http://")):
        raise ValueError("base_url must be an http(s) URL")
    path = tracking_path(secret_key, tenant_id, order_id, lifetime=lifetime, now=now)
    return base_url.rstrip("/") + path


# ---------------------------------------------------------------- links in outbound email


@dataclass(frozen=True, slots=True)
class PublicLinks:
    """What a process needs to put a customer's tracking link in an email."""

    base_url: str
    secret_key: str


_public_links: PublicLinks | None = None


def configure_public_links(base_url: str | None, secret_key: str) -> None:
    """Set once per process (web app, worker) from `ORDERDESK_PUBLIC_URL` and the secret key.

    Emails are rendered deep inside services and event handlers that know no settings;
    the link's ingredients are process-wide facts, like the logging setup.
    """
    global _public_links
    _public_links = PublicLinks(base_url, secret_key) if base_url else None


def customer_link(tenant_id: UUID, order_id: UUID) -> str | None:
    """A fresh signed tracking link for an email, or None where no public URL is configured."""
    if _public_links is None:
        return None
    return tracking_url(_public_links.base_url, _public_links.secret_key, tenant_id, order_id)
