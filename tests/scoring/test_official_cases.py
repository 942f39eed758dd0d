"""The published figures of METHODOLOGY.md, reproduced to the second decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.scoring.engine import Inputs, evaluate
from services.scoring.frameworks import get_framework

ALL_LEVEL_3 = {f"I{number}": 3 for number in range(1, 48)}


def gmsc(values: dict[str, object]) -> Decimal | None:
    return evaluate(get_framework("gmsc-2023"), Inputs(values=values), strict=True).index.value


def test_kabupaten_bekasi_2023_final_index() -> None:
    values = {
        "baseline": "3.48",
        "output": "2.34",
        "outcome": "3.00",
        "impact": "2.70",
        "quickwin": "2.75",
    }
    result = evaluate(get_framework("gmsc-2023"), Inputs(values=values), strict=True)
    assert result.index.value == Decimal("2.81")
    assert result.index.predicate is None  # no categories are published for the 0–4 index
    contributions = {node: result.nodes[node].contribution for node in values}
    assert contributions == {
        "baseline": Decimal("0.3480"),
        "output": Decimal("0.4680"),
        "outcome": Decimal("0.9000"),
        "impact": Decimal("0.5400"),
        "quickwin": Decimal("0.5500"),
    }


def test_kebumen_2022_programme_completion_per_dimension() -> None:
    running_planned = {
        "governance": (9, 9),
        "living": (9, 10),
        "branding": (6, 7),
        "society": (9, 9),
        "economy": (10, 12),
        "environment": (4, 4),
    }
    values: dict[str, object] = {}
    for dimension, (running, planned) in running_planned.items():
        values[f"{dimension}.programmes_running"] = running
        values[f"{dimension}.programmes_planned"] = planned
    result = evaluate(get_framework("gmsc-2023"), Inputs(values=values))
    completion = {d: result.nodes[f"{d}.completion"].value for d in running_planned}
    assert completion == {
        "governance": Decimal("100.00"),
        "living": Decimal("90.00"),
        "branding": Decimal("85.71"),
        "society": Decimal("100.00"),
        "economy": Decimal("83.33"),
        "environment": Decimal("100.00"),
    }
    assert not result.complete  # components not given: no final index, and it says so
    assert result.index.missing == ("baseline", "output", "outcome", "impact", "quickwin")


def test_dimension_index_is_the_mean_of_its_programme_scores() -> None:
    values = {
        "governance.layanan_publik": [3, 4],
        "governance.kebijakan_publik": [2],
        "governance.tata_kelola_birokrasi": [4],
    }
    result = evaluate(get_framework("gmsc-2023"), Inputs(values=values))
    assert result.nodes["governance"].value == Decimal("3.25")  # 13 / 4, a multiple of 1/4


def test_spbe_all_level_3_is_3_00_baik() -> None:
    result = evaluate(get_framework("spbe-2020"), Inputs(values=ALL_LEVEL_3), strict=True)
    assert result.index.value == Decimal("3.00")
    assert result.index.predicate == "Baik"
    assert result.nodes["I1"].predicate == "Terstandardisasi"
    assert {result.nodes[f"D{n}"].value for n in range(1, 5)} == {Decimal("3.00")}


def test_spbe_index_that_needs_half_up_rounding() -> None:
    # I11 weighs 2.50: one level more gives Σ(w·l) = 302.5, an index of exactly 3.025.
    # Half-up gives 3.03; half-even, or a binary float (3.0249999…), would give 3.02.
    values = {**ALL_LEVEL_3, "I11": 4}
    result = evaluate(get_framework("spbe-2020"), Inputs(values=values), strict=True)
    assert result.index.value == Decimal("3.03")
    # (Binary floats would publish 3.02: round(302.5 / 100, 2) is 3.02 in Python.)


@pytest.mark.parametrize(
    ("index", "predicate"),
    [
        ("1.79", "Kurang"),
        ("1.80", "Cukup"),
        ("2.59", "Cukup"),
        ("2.60", "Baik"),
        ("3.49", "Baik"),
        ("3.50", "Sangat Baik"),
        ("4.19", "Sangat Baik"),
        ("4.20", "Memuaskan"),
        ("1.00", "Kurang"),
        ("5.00", "Memuaskan"),
    ],
)
def test_spbe_predicate_on_and_below_every_band_boundary(index: str, predicate: str) -> None:
    result = evaluate(get_framework("spbe-2020"), Inputs(values={"spbe": index}))
    assert result.index.value == Decimal(index)
    assert result.index.predicate == predicate


def test_spbe_predicate_follows_the_published_rounded_index() -> None:
    # All level 3 (300) + A7 and A8 at level 4 (+27.5 +18) + I11 (+2.5) + I21 (+1.5):
    # Σ(w·l) = 349.5, an index of 3.495, published as 3.50, which is "Sangat Baik".
    levels = {**ALL_LEVEL_3, **{f"I{n}": 4 for n in range(32, 48)}, "I11": 4, "I21": 4}
    result = evaluate(get_framework("spbe-2020"), Inputs(values=levels), strict=True)
    assert result.index.value == Decimal("3.50")
    assert result.index.predicate == "Sangat Baik"
    levels["I21"] = 3  # Σ = 348.0 → 3.48, "Baik"
    result = evaluate(get_framework("spbe-2020"), Inputs(values=levels), strict=True)
    assert result.index.value == Decimal("3.48")
    assert result.index.predicate == "Baik"


def test_kota_bogor_2024_linked_composite() -> None:
    inputs = Inputs(
        linked={"gmsc-2023/final": "3.46", "spbe-2020/spbe": "3.72"},
        metrics={"integrated_apps": 148, "integrated_apps_target": 327},
    )
    result = evaluate(get_framework("smartcity-spbe-linked"), inputs, strict=True)
    assert result.nodes["smart_city_index"].value == Decimal("86.50")  # 3.46 / 4
    assert result.nodes["spbe_index"].value == Decimal("68.00")  # (3.72 - 1) / 4
    assert result.nodes["app_integration"].value == Decimal("45.26")  # 148 / 327
    # 0.4 × 86.5 + 0.4 × 68 + 0.2 × 45.2599… = 70.8519…
    assert result.index.value == Decimal("70.85")
    assert result.nodes["app_integration"].inputs == (
        "metric:integrated_apps",
        "metric:integrated_apps_target",
    )
    # The figures it was computed from, for a reader to see: 148 of 327 apps integrated.
    assert result.nodes["app_integration"].metrics == (
        ("integrated_apps", "148"),
        ("integrated_apps_target", "327"),
    )
    assert result.to_dict()["nodes"]["app_integration"]["metrics"] == {
        "integrated_apps": "148",
        "integrated_apps_target": "327",
    }
    assert result.to_dict()["nodes"]["smart_city_index"]["metrics"] == {}


def test_integration_beyond_target_is_capped_at_100_percent() -> None:
    inputs = Inputs(
        linked={"gmsc-2023/final": "4", "spbe-2020/spbe": "5"},
        metrics={"integrated_apps": 400, "integrated_apps_target": 327},
    )
    result = evaluate(get_framework("smartcity-spbe-linked"), inputs, strict=True)
    assert result.nodes["app_integration"].value == Decimal("100.00")
    assert result.index.value == Decimal("100.00")
