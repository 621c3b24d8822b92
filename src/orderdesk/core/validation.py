"""Small validators shared by services, each returning a clean value or raising ValidationFailed."""

from __future__ import annotations

import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from orderdesk.core.errors import FieldError, ValidationFailed

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")


# Unicode's control characters (category Cc) are exactly U+0000-U+001F and U+007F-U+009F;
# tab, line feed and carriage return are allowed. One regular expression search instead of
# a category lookup per character (tests/unit/test_validation_fast_paths.py holds the two equal).
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control_characters(value: str) -> bool:
    return _CONTROL_CHARACTER.search(value) is not None


# An address whose local part is a plain ASCII dot-atom and whose domain the library
# accepted before is decided without the library: it would accept it and change nothing
# but the domain's form. Anything else, and every refusal, is the library's to decide.
_PLAIN_LOCAL_PART = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_MAX_LOCAL_PART = 64
_MAX_ADDRESS = 254


@functools.lru_cache(maxsize=4096)
def _accepted_domain(domain: str) -> str | None:
    """The library's normal form of `domain`, if it accepts it (ASCII domains only), else None."""
    if not domain.isascii():
        return None
    try:
        accepted = validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None
    return accepted if len(accepted) == len(domain) else None


def normalised_email(value: str) -> str:
    """The address in the form stored (the library's normal form, lower-cased).

    Raises EmailNotValidError. Most addresses in a file share a few domains: those are
    checked by the library once each, and the plain local parts by one pattern.
    """
    local, at, domain = value.rpartition("@")
    if (
        at
        and len(local) <= _MAX_LOCAL_PART
        and len(value) <= _MAX_ADDRESS
        and _PLAIN_LOCAL_PART.fullmatch(local)
    ):
        accepted = _accepted_domain(domain)
        if accepted is not None:
            return f"{local}@{accepted}".lower()
    return validate_email(value, check_deliverability=False).normalized.lower()


class Collector:
    """Gathers every field error of one input, so the caller hears about all of them at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def text(self, field: str, value: str, *, max_length: int, required: bool = True) -> str:
        cleaned = value.strip()
        if required and not cleaned:
            self.add(field, "is required")
        elif len(cleaned) > max_length:
            self.add(field, f"must be at most {max_length} characters")
        elif has_control_characters(cleaned):
            self.add(field, "must not contain control characters")
        return cleaned

    def email(self, field: str, value: str) -> str:
        try:
            return normalised_email(value.strip())
        except EmailNotValidError as exc:
            self.add(field, f"is not a valid email address ({exc})")
            return value

    def slug(self, field: str, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            self.add(field, "must be 3-40 lowercase letters, digits or hyphens, starting with a letter")
        return value

    def time_zone(self, field: str, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.add(field, f"{value!r} is not an IANA time zone such as Europe/Berlin")
        return value
