"""Secrets handed to clients (session cookies, API keys). Only their SHA-256 is stored:
the secrets are long and random, so a fast hash is enough and lookups stay indexable."""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "odk_"


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX) and 20 <= len(value) <= 100
