"""Small validators shared by services, each returning a clean value or raising ValidationFailed."""

from __future__ import annotations

import re
import unicodedata
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from orderdesk.core.errors import FieldError, ValidationFailed

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")


def has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value)


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
            return validate_email(value.strip(), check_deliverability=False).normalized.lower()
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
