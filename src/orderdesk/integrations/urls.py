"""Webhook URL checks against server-side request forgery.

A URL is refused when its host resolves to a private, loopback, link-local,
multicast or otherwise reserved address, unless the deployment allows private
targets (local development, tests). The check runs when an endpoint is saved and
again before every delivery, since DNS answers can change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


class UnsafeUrl(ValueError):
    """The URL is malformed or points somewhere a webhook must not go."""


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for flag, label in (
        (address.is_loopback, "loopback"),
        (address.is_private, "private"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_unspecified, "unspecified"),
    ):
        if flag:
            return label
    return None


def check_syntax(url: str, *, allow_private: bool) -> str:
    """Raises UnsafeUrl for anything but an absolute http(s) URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("must start with https:// (or http://)")
    if parts.scheme == "http" and not allow_private:
        raise UnsafeUrl("must use https://")
    if not parts.hostname:
        raise UnsafeUrl("must name a host")
    if parts.username or parts.password:
        raise UnsafeUrl("must not carry credentials; use the signing secret to authenticate us")
    return url.strip()


async def check_target(url: str, *, allow_private: bool) -> None:
    """Resolve the host and refuse unsafe addresses. Raises UnsafeUrl."""
    check_syntax(url, allow_private=allow_private)
    if allow_private:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if problem := _address_problem(address):
            raise UnsafeUrl(f"resolves to a {problem} address ({address}); webhooks go to public hosts only")
