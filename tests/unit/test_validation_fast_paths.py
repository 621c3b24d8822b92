"""The fast paths of shared validators decide exactly as the slow rules they stand for."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from email_validator import EmailNotValidError, validate_email

from orderdesk.core.validation import Collector, has_control_characters, normalised_email


def test_control_characters_are_unicode_category_cc_less_tab_and_line_ends():
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        expected = unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"
        assert has_control_characters(f"a{ch}b") is expected, hex(code)


def _library(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _ours(value: str) -> str | None:
    try:
        return normalised_email(value)
    except EmailNotValidError:
        return None


ADDRESSES = [
    "kundin.7@ord.example.com",
    "Kundin.7@Ord.Example.COM",
    "a+b_c-d@example.org",
    "x@example.com",
    ".dot@example.com",
    "dot.@example.com",
    "two..dots@example.com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 57 + ".com",
    "a" * 60 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 60 + ".com",
    "user@localhost",
    "user@example",
    "user@example.invalid",
    "user@-example.com",
    "user@exa_mple.com",
    "user@example..com",
    "user@xn--bcher-kva.example",
    "user@bücher.example",
    "üser@example.com",
    '"quoted"@example.com',
    "o'brien@example.com",
    "a@b@example.com",
    "@example.com",
    "user@",
    "user@[127.0.0.1]",
    "user@123.example.com",
    "user@example.com.",
    "UPPER@EXAMPLE.COM",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_email_fast_path_agrees_with_the_library(address):
    assert _ours(address) == _library(address)


def test_a_refused_address_keeps_the_librarys_message():
    check = Collector()
    check.email("customer.email", "two..dots@example.com")
    assert check.errors and "is not a valid email address (" in check.errors[0].message
