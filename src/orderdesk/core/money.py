"""Money in integer minor units, with each ISO 4217 currency's own exponent.

JPY has no minor unit (¥1500 is 1500), KWD has three (1.500 KWD is 1500), most
currencies have two. Amounts are Python ints and PostgreSQL bigints; anything that
would not fit a signed 64-bit integer is refused before it reaches the database.
"""

from __future__ import annotations

import pycountry

# ISO 4217 minor units that are not 2. Currencies absent here and valid use 2.
_EXPONENT_EXCEPTIONS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
# Codes without minor units at all (precious metals, SDR, testing, fund units): not money
# anyone is invoiced in.
_NOT_FOR_ORDERS = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX", "XAD"}
)

CURRENCIES: frozenset[str] = frozenset(
    c.alpha_3 for c in pycountry.currencies if c.alpha_3 not in _NOT_FOR_ORDERS
)

MAX_MINOR = 2**63 - 1
# A single amount on an order: generous (10^15 minor units) yet far from overflow,
# so that sums of many lines still fit.
MAX_AMOUNT_MINOR = 10**15


def is_currency(code: str) -> bool:
    return code in CURRENCIES


def exponent(code: str) -> int:
    """Minor-unit digits of a valid currency code. Raises KeyError for unknown codes."""
    if code not in CURRENCIES:
        raise KeyError(code)
    return _EXPONENT_EXCEPTIONS.get(code, 2)


def format_minor(amount: int, code: str) -> str:
    """1234, "EUR" -> "12.34 EUR"; 1500, "JPY" -> "1500 JPY"."""
    digits = exponent(code)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d} {code}" if digits else f"{sign}{whole} {code}"
