"""A tenant's branding: its name, accent colour and logo, wherever its people or customers look.

The portal, the public tracking page and outbound emails all call `get_branding`
(or `branding_in_session` inside a transaction they already hold) and get one
`Branding` value, so the three never disagree about how a tenant looks.

The logo is served by a public route (`logo_path`): an email client or a
customer's browser fetches it without a session. Its URL carries the logo's
hash, so it can be cached for a long time and a new logo is a new URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core.db import Database
from orderdesk.core.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from orderdesk.core.tenancy import Scope
from orderdesk.tenants.models import Tenant, TenantBranding

# The console's own accent (static/app.css `--accent`), used when a tenant chose none.
DEFAULT_ACCENT = "#2456d3"
INK = "#1d2430"
WHITE = "#ffffff"
MAX_LOGO_BYTES = 256 * 1024
HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")

# Raster formats only, recognised by their first bytes. SVG is refused: it can carry
# script, and it would be served from our own origin.
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF87a", 0),
    ("image/gif", b"GIF89a", 0),
    ("image/webp", b"WEBP", 8),
)


@dataclass(frozen=True, slots=True)
class Branding:
    """How one tenant looks. Safe to show to anyone who may see one of its orders."""

    tenant_id: UUID
    name: str
    accent_colour: str  # "#rrggbb"
    # Text drawn on the accent colour: white or ink, whichever reads better.
    on_accent_colour: str
    # Site-relative path of the logo (public route), or None when there is none.
    logo_path: str | None
    custom_accent: bool = False

    def logo_url(self, base_url: str) -> str | None:
        """The logo's absolute URL (for emails), given the site's public base URL."""
        return base_url.rstrip("/") + self.logo_path if self.logo_path else None


@dataclass(frozen=True, slots=True)
class Logo:
    content: bytes
    content_type: str
    sha256: str


def normalise_hex_colour(value: str) -> str:
    """'#ABC', 'abc', '#aabbcc' → '#aabbcc'. Raises ValidationFailed for anything else."""
    match = HEX_COLOUR.fullmatch((value or "").strip())
    if not match:
        raise ValidationFailed(
            [FieldError("accent_colour", "must be a hex colour such as #2456d3 (six or three hex digits)")]
        )
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return "#" + digits


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG contrast ratio of two '#rrggbb' colours (1 to 21)."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_colour_on(colour: str) -> str:
    return WHITE if contrast_ratio(colour, WHITE) >= contrast_ratio(colour, INK) else INK


def logo_path(tenant_id: UUID, sha256: str) -> str:
    return f"/portal/branding/{tenant_id}/logo/{sha256[:16]}"


def _branding(tenant: Tenant, row: TenantBranding | None) -> Branding:
    accent = (row.accent_colour if row else None) or DEFAULT_ACCENT
    has_logo = row is not None and row.logo_sha256 is not None
    return Branding(
        tenant_id=tenant.id,
        name=tenant.name,
        accent_colour=accent,
        on_accent_colour=text_colour_on(accent),
        logo_path=logo_path(tenant.id, row.logo_sha256) if has_logo else None,
        custom_accent=bool(row and row.accent_colour),
    )


async def branding_in_session(session: AsyncSession, tenant_id: UUID) -> Branding:
    """The tenant's branding, read in the caller's transaction (whose scope must reach it).

    Raises NotFound for an unknown tenant.
    """
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    row = await session.scalar(
        select(TenantBranding)
        .where(TenantBranding.tenant_id == tenant_id)
        .execution_options(populate_existing=True)
    )
    return _branding(tenant, row)


async def get_branding(db: Database, tenant_id: UUID) -> Branding:
    """The tenant's branding, for any page or email that shows one of its orders.

    Branding is public by nature (it is on the tracking page), so this reads under a
    scope of that one tenant whoever asks. Raises NotFound for an unknown tenant.
    """
    async with db.transaction(Scope(tenant_ids=frozenset({tenant_id}))) as session:
        return await branding_in_session(session, tenant_id)


async def get_logo(db: Database, tenant_id: UUID) -> Logo:
    """The tenant's logo (public). Raises NotFound when the tenant has none."""
    async with db.transaction(Scope(tenant_ids=frozenset({tenant_id}))) as session:
        row = await session.get(TenantBranding, tenant_id)
    if row is None or row.logo is None:
        raise NotFound("Logo")
    return Logo(content=row.logo, content_type=row.logo_content_type or "", sha256=row.logo_sha256 or "")


def sniff_image_type(content: bytes) -> str | None:
    """The image's MIME type by its first bytes (PNG, JPEG, GIF, WebP), or None."""
    for content_type, signature, offset in _SIGNATURES:
        if content[offset : offset + len(signature)] == signature:
            if content_type == "image/webp" and content[:4] != b"RIFF":
                continue
            return content_type
    return None


def _require_brand_manager(actor: Actor, tenant_id: UUID) -> None:
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    if not (
        actor.kind is ActorKind.SYSTEM
        or actor.is_admin
        or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)
    ):
        raise PermissionDenied("Only the client's administrators can change its branding")


async def _row_for_update(session: AsyncSession, tenant_id: UUID, actor: Actor) -> TenantBranding:
    row = await session.get(TenantBranding, tenant_id, with_for_update=True)
    if row is None:
        row = TenantBranding(tenant_id=tenant_id, updated_by=actor.display_name)
        session.add(row)
    row.updated_by = actor.display_name
    row.updated_at = dt.datetime.now(dt.UTC)
    return row


async def set_accent_colour(db: Database, actor: Actor, tenant_id: UUID, colour: str | None) -> Branding:
    """Set (or with None / "" reset) the tenant's accent colour.

    Raises NotFound (tenant out of reach), PermissionDenied (not the client's or the
    platform's administrator), ValidationFailed (not a hex colour).
    """
    _require_brand_manager(actor, tenant_id)
    value = normalise_hex_colour(colour) if colour and colour.strip() else None
    async with db.transaction(actor.scope) as session:
        row = await _row_for_update(session, tenant_id, actor)
        row.accent_colour = value
        await session.flush()
        return await branding_in_session(session, tenant_id)


async def set_logo(
    db: Database, actor: Actor, tenant_id: UUID, content: bytes, declared_type: str | None
) -> Branding:
    """Store a new logo: PNG, JPEG, GIF or WebP, at most 256 KiB.

    The type is read from the file's own bytes; a declared type that disagrees is
    refused rather than trusted. Raises NotFound, PermissionDenied, ValidationFailed.
    """
    _require_brand_manager(actor, tenant_id)
    if not content:
        raise ValidationFailed([FieldError("logo", "is empty; choose an image file")])
    if len(content) > MAX_LOGO_BYTES:
        raise ValidationFailed(
            [FieldError("logo", f"is {len(content) // 1024} KiB; the limit is {MAX_LOGO_BYTES // 1024} KiB")]
        )
    sniffed = sniff_image_type(content)
    if sniffed is None:
        raise ValidationFailed([FieldError("logo", "must be a PNG, JPEG, GIF or WebP image")])
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared and declared not in ("application/octet-stream", sniffed):
        raise ValidationFailed([FieldError("logo", f"says it is {declared} but its content is {sniffed}")])
    async with db.transaction(actor.scope) as session:
        row = await _row_for_update(session, tenant_id, actor)
        row.logo = content
        row.logo_content_type = sniffed
        row.logo_sha256 = hashlib.sha256(content).hexdigest()
        await session.flush()
        return await branding_in_session(session, tenant_id)


async def remove_logo(db: Database, actor: Actor, tenant_id: UUID) -> Branding:
    """Remove the tenant's logo. Raises NotFound, PermissionDenied."""
    _require_brand_manager(actor, tenant_id)
    async with db.transaction(actor.scope) as session:
        row = await _row_for_update(session, tenant_id, actor)
        row.logo = row.logo_content_type = row.logo_sha256 = None
        await session.flush()
        return await branding_in_session(session, tenant_id)
