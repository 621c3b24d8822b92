"""Domain errors. Services raise these; `web.errors` turns them into HTTP answers,
and a background job can catch them just the same."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The object does not exist or is not the caller's: the two are never told apart."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} not found")
        self.kind = kind


class Conflict(DomainError):
    """The request is valid but clashes with the current state (duplicate, stale, in use)."""


class TooLarge(DomainError):
    """The input is larger than the limit for its kind (an email, an upload)."""


class PermissionDenied(DomainError):
    """The caller is known but its role does not allow this action."""


class AuthenticationFailed(DomainError):
    """Credentials are missing, wrong, expired or revoked."""


class Throttled(DomainError):
    """Too many attempts; `retry_after` seconds until the next one is considered."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ValidationFailed(DomainError):
    """Input broke a rule; every broken field is listed, not just the first."""

    def __init__(self, errors: list[FieldError], detail: str = "The input is not valid") -> None:
        super().__init__(detail)
        self.errors = errors


class InvalidTransition(DomainError):
    """A lifecycle action that the current state does not allow."""

    def __init__(self, state: str, action: str, allowed: tuple[str, ...], detail: str | None = None) -> None:
        super().__init__(detail or f"Action {action!r} is not allowed while the order is {state!r}")
        self.state = state
        self.action = action
        self.allowed = allowed
