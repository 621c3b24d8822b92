"""Countries (ISO 3166-1 alpha-2) and the postal code rules of countries that have them."""

from __future__ import annotations

import re

import pycountry

COUNTRIES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries)

# Countries whose addresses have no postal code in common use.
NO_POSTAL_CODE = frozenset(
    {
        "AE",
        "AG",
        "AO",
        "AW",
        "BF",
        "BI",
        "BJ",
        "BO",
        "BS",
        "BW",
        "BZ",
        "CF",
        "CG",
        "CI",
        "CK",
        "CM",
        "DJ",
        "DM",
        "ER",
        "FJ",
        "GA",
        "GD",
        "GH",
        "GM",
        "GQ",
        "GY",
        "HK",
        "IE",
        "KI",
        "KM",
        "KN",
        "KP",
        "LC",
        "ML",
        "MO",
        "MR",
        "MW",
        "NR",
        "NU",
        "QA",
        "RW",
        "SB",
        "SC",
        "SL",
        "SR",
        "ST",
        "SY",
        "TD",
        "TF",
        "TG",
        "TK",
        "TL",
        "TO",
        "TV",
        "UG",
        "VU",
        "YE",
        "ZW",
    }
)

# Formats for the countries orders most often ship to. Elsewhere any 2-10 character
# alphanumeric code (with spaces or hyphens) is accepted.
POSTAL_CODE_RULES: dict[str, tuple[str, str]] = {
    "US": (r"\d{5}(-\d{4})?", "5 digits, optionally -4 more (e.g. 94105 or 94105-1234)"),
    "CA": (r"[A-Z]\d[A-Z] ?\d[A-Z]\d", "letter-digit-letter digit-letter-digit (e.g. K1A 0B1)"),
    "GB": (r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}", "a UK postcode (e.g. SW1A 1AA)"),
    "DE": (r"\d{5}", "5 digits"),
    "FR": (r"\d{5}", "5 digits"),
    "IT": (r"\d{5}", "5 digits"),
    "ES": (r"\d{5}", "5 digits"),
    "NL": (r"\d{4} ?[A-Z]{2}", "4 digits and 2 letters (e.g. 1012 AB)"),
    "BE": (r"\d{4}", "4 digits"),
    "AT": (r"\d{4}", "4 digits"),
    "CH": (r"\d{4}", "4 digits"),
    "DK": (r"\d{4}", "4 digits"),
    "NO": (r"\d{4}", "4 digits"),
    "SE": (r"\d{3} ?\d{2}", "5 digits (e.g. 114 55)"),
    "FI": (r"\d{5}", "5 digits"),
    "PL": (r"\d{2}-\d{3}", "NN-NNN (e.g. 00-950)"),
    "PT": (r"\d{4}-\d{3}", "NNNN-NNN (e.g. 1000-001)"),
    "CZ": (r"\d{3} ?\d{2}", "5 digits (e.g. 110 00)"),
    "JP": (r"\d{3}-?\d{4}", "NNN-NNNN (e.g. 100-0001)"),
    "KR": (r"\d{5}", "5 digits"),
    "CN": (r"\d{6}", "6 digits"),
    "IN": (r"\d{6}", "6 digits"),
    "AU": (r"\d{4}", "4 digits"),
    "NZ": (r"\d{4}", "4 digits"),
    "BR": (r"\d{5}-?\d{3}", "NNNNN-NNN (e.g. 01310-100)"),
    "MX": (r"\d{5}", "5 digits"),
    "SG": (r"\d{6}", "6 digits"),
}
_GENERIC_POSTAL = re.compile(r"[A-Z0-9][A-Z0-9 \-]{0,8}[A-Z0-9]")


def is_country(code: str) -> bool:
    return code in COUNTRIES


def normalise_postal_code(code: str) -> str:
    return " ".join(code.upper().split())


def postal_code_problem(country: str, postal_code: str) -> str | None:
    """Why `postal_code` is not plausible for `country`, or None when it is."""
    code = normalise_postal_code(postal_code)
    if country in NO_POSTAL_CODE:
        return None
    if not code:
        return f"is required for {country}"
    rule = POSTAL_CODE_RULES.get(country)
    if rule is not None:
        pattern, description = rule
        if not re.fullmatch(pattern, code):
            return f"is not a valid {country} postal code: expected {description}"
        return None
    if not _GENERIC_POSTAL.fullmatch(code):
        return "must be 2-10 letters, digits, spaces or hyphens"
    return None
