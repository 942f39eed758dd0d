"""Exact numbers: inputs arrive as decimals, arithmetic is rational, rounding happens once.

Scores are computed in exact rational arithmetic (:class:`fractions.Fraction`) so that a roll-up
through intermediate quotients (an SPBE aspect divides by 4.5) equals the flat official formula to
the last digit; a fixed-precision Decimal context would leave 3.1249999… where the exact value is
3.125 and round it the wrong way. Binary floats are refused at the door.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Literal

RoundingMode = Literal["half_up", "half_even", "half_down", "down", "up"]
ROUNDING_MODES: tuple[str, ...] = ("half_up", "half_even", "half_down", "down", "up")


# No evaluation value comes near this; it bounds the work an exact conversion can be made to do.
MAX_EXPONENT = 1000


class NotANumber(ValueError):
    """A value that is not an exact number (a float, a non-numeric string, NaN)."""


def exact(value: object) -> Fraction:
    """``value`` as an exact fraction; ints, Decimals and decimal strings only."""
    if isinstance(value, bool):
        raise NotANumber(f"{value!r} is not a number")
    if isinstance(value, int | Fraction):
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NotANumber(f"{value} is not a finite number")
        if abs(value.adjusted()) > MAX_EXPONENT:
            # Fraction(Decimal("1e999999999")) would compute 10**999999999: refuse instead.
            raise NotANumber(f"{value} is outside ±1e{MAX_EXPONENT}")
        return Fraction(value)
    if isinstance(value, str):
        return _parse(value)
    if isinstance(value, float):
        raise NotANumber(f"{value!r} is a binary float; pass numbers as decimal strings")
    raise NotANumber(f"{value!r} is not a number")


@lru_cache(maxsize=4096)
def _parse(text: str) -> Fraction:
    """A decimal string as a fraction; inputs repeat (maturity levels "1"–"5"), so cached
    (fractions are immutable)."""
    try:
        parsed = Decimal(text.strip())
    except InvalidOperation:
        raise NotANumber(f"{text!r} is not a number") from None
    return exact(parsed)


def decimal_text(value: Decimal | None) -> str | None:
    """A stored or computed decimal as JSON carries it: plain notation, every digit kept."""
    return None if value is None else format(value, "f")


def plain(value: Fraction, places: int = 6) -> str:
    """``value`` as short decimal text for messages and labels: 2.5, 100, 0.333333."""
    return format(round_exact(value, places, "half_up").normalize(), "f")


def round_exact(value: Fraction, places: int, mode: RoundingMode = "half_up") -> Decimal:
    """Round ``value`` to ``places`` decimals by ``mode``, exactly (integer arithmetic).

    ``half_up`` rounds halves away from zero, as the official methodologies (and Excel's ROUND)
    do: 3.125 → 3.13, -3.125 → -3.13.
    """
    return Decimal(rounded_units(value, places, mode)).scaleb(-places)


def rounded_units(value: Fraction, places: int, mode: RoundingMode = "half_up") -> int:
    """``value`` rounded to ``places`` decimals, as a whole number of 10^-places units."""
    numerator, denominator = value.numerator, value.denominator
    scale: int = 10**places
    if denominator == 1:
        return numerator * scale
    quotient, remainder = divmod(abs(numerator) * scale, denominator)
    if remainder:
        twice = 2 * remainder
        if mode == "up":
            quotient += 1
        elif mode == "half_up":
            quotient += twice >= denominator
        elif mode == "half_down":
            quotient += twice > denominator
        elif mode == "half_even":
            quotient += twice > denominator or (twice == denominator and quotient % 2 == 1)
    return -quotient if numerator < 0 else quotient
