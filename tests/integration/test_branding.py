"""Tenant branding: accent colour and logo, read by the portal, tracking page and emails alike."""

from __future__ import annotations

import struct
import zlib

import pytest

from orderdesk.accounts.models import ClientRole
from orderdesk.core.errors import NotFound, PermissionDenied, ValidationFailed
from orderdesk.tenants import branding
from tests.conftest import World


def tiny_png(width: int = 2, height: int = 1) -> bytes:
    """A valid PNG of `width` x `height` red pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("given", "stored"), [("#ABCDEF", "#abcdef"), ("abc", "#aabbcc"), (" #123456 ", "#123456")]
)
def test_hex_colours_are_normalised(given, stored):
    assert branding.normalise_hex_colour(given) == stored


@pytest.mark.parametrize("given", ["red", "#12345", "#1234567", "#ggg000", "rgb(1,2,3)", "#12 345"])
def test_other_colours_are_refused_with_the_reason(given):
    with pytest.raises(ValidationFailed) as refused:
        branding.normalise_hex_colour(given)
    assert refused.value.errors[0].field == "accent_colour"
    assert "hex colour" in refused.value.errors[0].message


def test_text_on_the_accent_stays_readable():
    assert branding.text_colour_on("#ffeb3b") == branding.INK  # yellow: dark text
    assert branding.text_colour_on("#1a237e") == branding.WHITE  # navy: white text
    assert branding.contrast_ratio("#000000", "#ffffff") == pytest.approx(21)


async def test_defaults_until_the_tenant_chooses(db, world: World):
    look = await branding.get_branding(db, world.a.id)
    assert look.name == "Acme Outdoor"
    assert look.accent_colour == branding.DEFAULT_ACCENT
    assert look.logo_path is None and look.logo_url("https://x.example") is None


async def test_client_admin_sets_colour_and_logo_served_publicly(db, world: World, client):
    actor = await _client_actor(db, world, ClientRole.ADMIN)
    look = await branding.set_accent_colour(db, actor, world.a.id, "#0A7")
    assert look.accent_colour == "#00aa77"
    png = tiny_png()
    look = await branding.set_logo(db, actor, world.a.id, png, "image/png")
    assert (
        look.logo_path and look.logo_url("https://desk.example/") == "https://desk.example" + look.logo_path
    )
    # B is untouched.
    assert (await branding.get_branding(db, world.b.id)).accent_colour == branding.DEFAULT_ACCENT

    served = await client.get(look.logo_path)
    assert served.status_code == 200
    assert served.content == png
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in served.headers["cache-control"]
    assert (await client.get(f"/portal/branding/{world.b.id}/logo/0000000000000000")).status_code == 404


@pytest.mark.parametrize(
    ("content", "declared", "message"),
    [
        (b"", "image/png", "is empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", "PNG, JPEG, GIF or WebP"),
        (b"GIF89a" + b"\x00" * 10, "image/png", "says it is image/png but its content is image/gif"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * (300 * 1024), "image/png", "the limit is 256 KiB"),
    ],
)
async def test_bad_logos_are_refused_and_nothing_changes(db, world: World, content, declared, message):
    actor = await _client_actor(db, world, ClientRole.ADMIN)
    with pytest.raises(ValidationFailed) as refused:
        await branding.set_logo(db, actor, world.a.id, content, declared)
    assert message in refused.value.errors[0].message
    assert (await branding.get_branding(db, world.a.id)).logo_path is None


async def test_viewers_and_other_tenants_cannot_change_branding(db, world: World):
    viewer = await _client_actor(db, world, ClientRole.VIEWER)
    with pytest.raises(PermissionDenied):
        await branding.set_accent_colour(db, viewer, world.a.id, "#000000")
    admin = await _client_actor(db, world, ClientRole.ADMIN)
    with pytest.raises(NotFound):
        await branding.set_accent_colour(db, admin, world.b.id, "#000000")


async def _client_actor(db, world: World, role: ClientRole):
    from orderdesk.accounts.actors import Actor, ActorKind

    person = world.client_admin_a if role is ClientRole.ADMIN else world.client_viewer_a
    return Actor(
        kind=ActorKind.CLIENT,
        id=person.id,
        display_name="Client",
        tenant_ids=frozenset({world.a.id}),
        client_role=role,
    )
