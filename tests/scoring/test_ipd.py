"""Indeks Pemerintah Digital (PermenPANRB 8/2026): the official arithmetic, the provisional
predikat bands, decimal indicator values and the indicators fed by outside indices."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from services.domain.assessment.states import Value
from services.scoring.engine import FrameworkError, InputError, Inputs, compile_framework, evaluate
from services.scoring.frameworks import get_framework
from services.scoring.service import counted_values, index_alone, values_alone
from tests.scoring.test_cli import cerdas, write

# Weights of METHODOLOGY.md §3, by indicator.
WEIGHTS = {
    "I1": 5, "I2": 5, "I3": 5, "I4": 5, "I5": 5, "I6": 3, "I7": 3, "I8": 4, "I9": 4, "I10": 4,
    "I11": 3, "I12": 4, "I13": 5, "I14": 5, "I15": 4, "I16": 4, "I17": 4, "I18": 3, "I19": 10,
    "I20": 15,
}  # fmt: skip
ASPECTS = {
    "A1": (10, ["I1", "I2"]),
    "A2": (10, ["I3", "I4"]),
    "A3": (15, ["I5", "I6", "I7", "I8"]),
    "A4": (15, ["I9", "I10", "I11", "I12"]),
    "A5": (10, ["I13", "I14"]),
    "A6": (15, ["I15", "I16", "I17", "I18"]),
    "A7": (25, ["I19", "I20"]),
}
OUTSIDE = ("I5", "I6", "I7", "I18")


def ipd(values: dict[str, object], *, strict: bool = True) -> tuple[Decimal | None, str | None]:
    result = evaluate(get_framework("ipd-2026"), Inputs(values=values), strict=strict)
    return result.index.value, result.index.predicate


def all_at(value: str) -> dict[str, object]:
    return {node: value for node in WEIGHTS}


def test_structure_names_and_weights_are_the_regulations() -> None:
    framework = get_framework("ipd-2026")
    assert framework.index.id == "ipd"
    assert framework.source is not None
    assert "PermenPANRB No. 8 Tahun 2026" in framework.source
    assert [(a.id, a.weight) for a in framework.index.children] == [
        (aspect, weight) for aspect, (weight, _) in ASPECTS.items()
    ]
    for aspect in framework.index.children:
        assert [child.id for child in aspect.children] == ASPECTS[aspect.id][1]
    leaves = {node.id: node for node in framework.nodes() if node.is_leaf}
    assert {node_id: node.weight for node_id, node in leaves.items()} == WEIGHTS
    assert framework.node("A7").name == "Kepuasan Pengguna Layanan Digital Pemerintah"
    assert framework.node("I9").name == (
        "Pelaksanaan Audit Keamanan dan Teknologi Pemerintah Digital"
    )
    assert {n for n, node in leaves.items() if node.input == "outside"} == set(OUTSIDE)
    scale = leaves["I1"].scale
    assert scale is not None
    assert not scale.integer
    assert scale.labels == {
        1: "Rintisan/Merintis",
        2: "Terkelola/Membangun",
        3: "Berkembang",
        4: "Melembaga",
        5: "Unggul",
    }
    # The predikat bands are provisional and marked so in the file.
    assert framework.description is not None
    assert "PROVISIONAL" in framework.description
    assert framework.index.description is not None
    assert "PROVISIONAL" in framework.index.description


def test_all_indicators_at_1_5_is_1_50_cukup() -> None:
    assert ipd(all_at("1.5")) == (Decimal("1.50"), "Cukup")
    result = evaluate(get_framework("ipd-2026"), Inputs(values=all_at("1.5")), strict=True)
    assert {result.nodes[a].value for a in ASPECTS} == {Decimal("1.50")}


def test_a_mixed_case_computed_by_hand() -> None:
    values = {
        "I1": "3.2", "I2": "2.8", "I3": "3", "I4": "2.5", "I6": "2.1", "I8": "1.26",
        "I9": "2", "I10": "3.4", "I11": "1.3", "I12": "2.75", "I13": "3.6", "I14": "3.1",
        "I15": "2.2", "I16": "2.9", "I17": "4.1", "I19": "3.35", "I20": "3.07",
    }  # fmt: skip
    # I5, I7 and I18 are not given: outside indicators, counted as 1.
    # Σ(w·v) = 5·3.2 + 5·2.8                      (A1: 30    ÷ 10 = 3.00)
    #        + 5·3 + 5·2.5                        (A2: 27.5  ÷ 10 = 2.75)
    #        + 5·1 + 3·2.1 + 3·1 + 4·1.26         (A3: 19.34 ÷ 15 = 1.2893… → 1.29)
    #        + 4·2 + 4·3.4 + 3·1.3 + 4·2.75       (A4: 36.5  ÷ 15 = 2.4333… → 2.43)
    #        + 5·3.6 + 5·3.1                      (A5: 33.5  ÷ 10 = 3.35)
    #        + 4·2.2 + 4·2.9 + 4·4.1 + 3·1        (A6: 39.8  ÷ 15 = 2.6533… → 2.65)
    #        + 10·3.35 + 15·3.07                  (A7: 79.55 ÷ 25 = 3.182 → 3.18)
    #        = 266.19; IPD = 266.19 ÷ 100 = 2.6619 → 2.66, "Baik".
    result = evaluate(get_framework("ipd-2026"), Inputs(values=values), strict=True)
    assert (result.index.value, result.index.predicate) == (Decimal("2.66"), "Baik")
    aspects = {aspect: result.nodes[aspect].value for aspect in ASPECTS}
    assert aspects == {
        "A1": Decimal("3.00"),
        "A2": Decimal("2.75"),
        "A3": Decimal("1.29"),
        "A4": Decimal("2.43"),
        "A5": Decimal("3.35"),
        "A6": Decimal("2.65"),
        "A7": Decimal("3.18"),
    }
    # The flat formula and the roll-up through the aspects are the same exact quantity.
    flat = sum(
        (Decimal(WEIGHTS[n]) * Decimal(str(values.get(n, "1"))) for n in WEIGHTS), Decimal(0)
    )
    assert flat == Decimal("266.19")


@pytest.mark.parametrize(
    ("index", "predicate"),
    [
        ("1.00", "Kurang"),
        ("1.49", "Kurang"),
        ("1.50", "Cukup"),
        ("2.49", "Cukup"),
        ("2.50", "Baik"),
        ("3.49", "Baik"),
        ("3.50", "Sangat Baik"),
        ("3.99", "Sangat Baik"),
        ("4.00", "Memuaskan"),
        ("5.00", "Memuaskan"),
    ],
)
def test_predicate_on_and_below_every_band_boundary(index: str, predicate: str) -> None:
    # A published index standing in for the indicators (lower bounds inclusive).
    assert ipd({"ipd": index}, strict=False) == (Decimal(index), predicate)


def test_band_edge_reached_through_the_indicators_follows_the_published_value() -> None:
    # All at 1 (Σ = 100) with I20 (weight 15) at 4.3: Σ = 100 + 15 · 3.3 = 149.5, an index of
    # exactly 1.495, published half-up as 1.50, which is "Cukup".
    values = {**all_at("1"), "I20": "4.3"}
    assert ipd(values) == (Decimal("1.50"), "Cukup")
    # I20 at 4.26: Σ = 100 + 15 · 3.26 = 148.9 → 1.489 → 1.49, "Kurang".
    values["I20"] = "4.26"
    assert ipd(values) == (Decimal("1.49"), "Kurang")
    # All at 4: 4.00, "Memuaskan" (with the provisional bands); all at 3.5: "Sangat Baik".
    assert ipd(all_at("4")) == (Decimal("4.00"), "Memuaskan")
    assert ipd(all_at("3.5")) == (Decimal("3.50"), "Sangat Baik")
    assert ipd(all_at("2.5")) == (Decimal("2.50"), "Baik")


def test_decimal_values_are_accepted() -> None:
    result = evaluate(
        get_framework("ipd-2026"),
        Inputs(values={**all_at("1"), "I8": "1.26", "I1": Decimal("2.5")}),
    )
    assert result.nodes["I8"].value == Decimal("1.26")
    assert result.nodes["I1"].value == Decimal("2.50")
    # Σ = 100 + 4 · 0.26 + 5 · 1.5 = 108.54 → 1.0854 → 1.09
    assert result.index.value == Decimal("1.09")


@pytest.mark.parametrize("value", ["0.99", "5.01", "0", "6", "-1"])
def test_values_off_1_to_5_are_refused(value: str) -> None:
    with pytest.raises(InputError, match=rf"I3: value {value} is off the scale 1–5"):
        ipd({"I3": value}, strict=False)


@pytest.mark.parametrize("node", OUTSIDE)
def test_outside_value_off_the_scale_is_refused(node: str) -> None:
    with pytest.raises(InputError, match=rf"{node}: value 0.5 is off the scale 1–5"):
        ipd({node: "0.5"}, strict=False)


def test_absent_outside_indicators_count_as_1_and_say_so() -> None:
    regional = {node: "3" for node in WEIGHTS if node not in OUTSIDE}
    result = evaluate(get_framework("ipd-2026"), Inputs(values=regional), strict=True)
    # Σ = 3 · 86 + 1 · (5 + 3 + 3 + 3) = 258 + 14 = 272 → 2.72
    assert result.complete
    assert result.index.value == Decimal("2.72")
    i5 = result.nodes["I5"]
    assert (i5.value, i5.source, i5.inputs, i5.missing) == (Decimal("1.00"), "outside", (), ())
    assert i5.note == "no value from Bappenas (Satu Data Indonesia) yet: counted as 1"
    assert result.nodes["I6"].note == (
        "no value from BIG (simpul jaringan informasi geospasial) yet: counted as 1"
    )
    assert (
        result.nodes["I7"].note == "no value from BPS (EPSS statistik sektoral) yet: counted as 1"
    )
    assert result.nodes["I18"].note == (
        "no value from Bappenas (interoperabilitas data) yet: counted as 1"
    )
    assert result.to_dict()["nodes"]["I5"]["source"] == "outside"


def test_a_given_outside_value_is_used() -> None:
    values = {**{node: "3" for node in WEIGHTS}, "I5": "2.35"}
    taken = {"I5": "Skor SDI 2025, as of 2026-05-12"}
    result = evaluate(get_framework("ipd-2026"), Inputs(values=values, sources=taken), strict=True)
    i5 = result.nodes["I5"]
    assert (i5.value, i5.source, i5.inputs, i5.note) == (
        Decimal("2.35"),
        "outside",
        ("value:I5",),
        "from Bappenas (Satu Data Indonesia): Skor SDI 2025, as of 2026-05-12",
    )
    assert result.nodes["I6"].note == "from BIG (simpul jaringan informasi geospasial)"
    # Σ = 300 − 5 · 0.65 = 296.75 → 2.9675 → 2.97
    assert result.index.value == Decimal("2.97")


def test_the_self_assessed_and_verified_indices_count_outside_indicators_as_the_index() -> None:
    """An outside index is entered in review (a verified value), never self-assessed: both
    indices beside the index count it as the index does, and the file's 1 while absent."""
    framework = get_framework("ipd-2026")
    entered: dict[str, dict[Value, object]] = {
        node: {Value.SELF: "3"} for node in WEIGHTS if node not in OUTSIDE
    }
    entered["I5"] = {Value.VERIFIED: "2.35"}
    entered["I1"][Value.VERIFIED] = "4"

    def alone(kind: Value) -> tuple[Decimal | None, str | None]:
        counted, _ = counted_values(framework, entered)
        return index_alone(
            framework, Inputs(values=values_alone(framework, entered, counted, kind))
        )

    # Σ = 3 · 86 + 2.35 · 5 + 1 · (3 + 3 + 3) = 258 + 11.75 + 9 = 278.75 → 2.7875 → 2.79
    assert alone(Value.SELF) == (Decimal("2.79"), "Baik")
    # Verified: I1 alone of the region's indicators, so the index waits for the others.
    assert alone(Value.VERIFIED) == (None, None)
    for node in WEIGHTS:
        if node not in OUTSIDE:
            entered[node][Value.VERIFIED] = "2"
    # Σ = 2 · 86 + 11.75 + 9 = 192.75 → 1.9275 → 1.93
    assert alone(Value.VERIFIED) == (Decimal("1.93"), "Cukup")
    assert alone(Value.SELF) == (Decimal("2.79"), "Baik")  # unchanged by verification


OUTSIDE_DEMO = """
id: demo
name: Demo
version: "1"
scales:
  score: {min: 1, max: 5}
index:
  id: total
  name: Total
  scale: score
  aggregation: weighted_mean
  children:
    - {id: a, name: A, scale: score}
    - id: b
      name: B
      scale: score
      input: outside
      outside: {source: Bappenas (Satu Data Indonesia), absent_value: 1}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(FrameworkError) as caught:
        compile_framework(textwrap.dedent(text), file="demo.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_an_outside_leaf_without_absent_value_is_missing_until_given() -> None:
    framework = compile_framework(OUTSIDE_DEMO.replace(", absent_value: 1", ""))
    result = evaluate(framework, Inputs(values={"a": 3}))
    assert result.index.value is None
    assert result.nodes["b"].missing == ("b",)
    assert result.nodes["b"].note == "no value from Bappenas (Satu Data Indonesia) yet"
    assert evaluate(framework, Inputs(values={"a": 3, "b": 2})).index.value == Decimal("2.50")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "absent_value: 1}",
            "absent_value: 1, date: 2026}",
            "demo.yaml: total/b: unknown outside key 'date' (known: source, absent_value)",
        ),
        (
            "{source: Bappenas (Satu Data Indonesia), absent_value: 1}",
            "{absent_value: 1}",
            "demo.yaml: total/b: outside: missing 'source'",
        ),
        (
            "absent_value: 1}",
            "absent_value: 0}",
            "demo.yaml: total/b: outside absent_value 0 is off the node's scale 1–5",
        ),
        (
            "absent_value: 1}",
            "absent_value: many}",
            "demo.yaml: total/b: outside absent_value must be a number, got 'many'",
        ),
        (
            "      outside: {source: Bappenas (Satu Data Indonesia), absent_value: 1}\n",
            "",
            "demo.yaml: total/b: input: outside needs 'outside' with 'source'",
        ),
        (
            "      input: outside\n",
            "",
            "demo.yaml: total/b: 'outside' is only for leaves with input: outside",
        ),
        (
            "  aggregation: weighted_mean\n",
            "  aggregation: weighted_mean\n  outside: {source: x}\n",
            "demo.yaml: total: 'outside' is for leaves; this node has children",
        ),
        (
            "      input: outside\n",
            "      input: outside\n      items: true\n",
            "demo.yaml: total/b: 'items' (a list of values) is for assessed leaves",
        ),
        (
            "      input: outside\n",
            "      input: outsider\n",
            "demo.yaml: total/b: unknown input kind 'outsider' "
            "(known: assessed, metric, linked, outside)",
        ),
    ],
)
def test_a_broken_outside_leaf_is_refused_with_its_path(old: str, new: str, message: str) -> None:
    assert old in OUTSIDE_DEMO
    found = problems(OUTSIDE_DEMO.replace(old, new))
    assert any(message in problem for problem in found), found


def test_cli_scores_ipd_offline(tmp_path: Path) -> None:
    run = cerdas("score", "--framework", "ipd-2026", "--input", write(tmp_path, {
        "values": {node: "1.5" for node in WEIGHTS if node not in OUTSIDE}
    }))  # fmt: skip
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    # The four outside indicators count 1: Σ = 1.5 · 86 + 14 = 143 → 1.43.
    assert (output["framework"], output["index"], output["predicate"]) == (
        "ipd-2026",
        "1.43",
        "Kurang",
    )
    assert output["nodes"]["I18"]["note"].endswith("yet: counted as 1")
    explained = cerdas(
        "score", "--framework", "ipd-2026", "--input", write(tmp_path, {"values": all_at("1.5")}),
        "--explain",
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    assert "index 1.50" in explained.stdout


def test_cli_refuses_an_off_scale_ipd_value_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"values": {"I1": "5.5"}})
    run = cerdas("score", "--framework", "ipd-2026", "--input", path)
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "I1: value 5.5 is off the scale 1–5" in lines[0]
