"""Properties that hold for any inputs, checked with hypothesis."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.engine import Inputs, evaluate
from services.scoring.engine.numbers import NotANumber, exact
from services.scoring.frameworks import get_framework

COMPONENTS = ("baseline", "output", "outcome", "impact", "quickwin")
INDICATORS = tuple(f"I{n}" for n in range(1, 48))

# The official weight table (METHODOLOGY.md, PermenPANRB 59/2020) as an independent oracle.
OFFICIAL_WEIGHTS = {
    **{f"I{n}": Decimal("1.30") for n in range(1, 11)},
    **{f"I{n}": Decimal("2.50") for n in range(11, 21)},
    **{f"I{n}": Decimal("1.50") for n in range(21, 32)},
    **{f"I{n}": Decimal("2.75") for n in range(32, 42)},
    **{f"I{n}": Decimal("3.00") for n in range(42, 48)},
}

component_scores = st.decimals(min_value=0, max_value=4, places=2)
levels = st.integers(min_value=1, max_value=5)
spbe_levels = st.fixed_dictionaries({indicator: levels for indicator in INDICATORS})
gmsc_values = st.fixed_dictionaries({component: component_scores for component in COMPONENTS})


def spbe_index(values: dict[str, int]) -> Decimal:
    result = evaluate(get_framework("spbe-2020"), Inputs(values=values), strict=True)
    assert result.index.value is not None
    return result.index.value


def gmsc_index(values: dict[str, Decimal]) -> Decimal:
    result = evaluate(get_framework("gmsc-2023"), Inputs(values=values), strict=True)
    assert result.index.value is not None
    return result.index.value


@settings(max_examples=300)
@given(spbe_levels)
def test_spbe_roll_up_equals_the_flat_official_formula(values: dict[str, int]) -> None:
    flat = sum(OFFICIAL_WEIGHTS[i] * level for i, level in values.items()) / 100
    assert spbe_index(values) == flat.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@given(spbe_levels)
def test_spbe_index_stays_within_1_and_5(values: dict[str, int]) -> None:
    assert Decimal(1) <= spbe_index(values) <= Decimal(5)


@given(gmsc_values)
def test_gmsc_index_stays_within_0_and_4(values: dict[str, Decimal]) -> None:
    assert Decimal(0) <= gmsc_index(values) <= Decimal(4)


@given(gmsc_values, st.sampled_from(COMPONENTS), component_scores)
def test_raising_a_component_never_lowers_the_gmsc_index(
    values: dict[str, Decimal], component: str, other: Decimal
) -> None:
    raised = {**values, component: max(values[component], other)}
    assert gmsc_index(raised) >= gmsc_index(values)


@given(spbe_levels, st.sampled_from(INDICATORS))
def test_raising_a_level_never_lowers_the_spbe_index(
    values: dict[str, int], indicator: str
) -> None:
    raised = {**values, indicator: min(values[indicator] + 1, 5)}
    assert spbe_index(raised) >= spbe_index(values)


@pytest.mark.parametrize("text", ["1e999999999999999999", "1e-999999999", "-1E+5000"])
def test_absurd_exponents_are_refused_at_once(text: str) -> None:
    # Fraction(Decimal("1e999999999999999999")) would compute 10**(10**18) and never return.
    with pytest.raises(NotANumber, match="outside"):
        exact(text)
