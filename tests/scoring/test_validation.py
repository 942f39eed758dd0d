"""Framework files: the shipped ones validate, broken ones fail with the right message."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from services.scoring.engine import FrameworkError, check_links, compile_framework
from services.scoring.frameworks import registry, shipped_files

GOOD = """
id: demo
name: Demo
version: "1"
scales:
  score: {min: 0, max: 4}
index:
  id: total
  name: Total
  scale: score
  aggregation: weighted_mean
  weights_total: 100
  children:
    - {id: a, name: A, weight: 60, scale: score}
    - {id: b, name: B, weight: 40, scale: score}
"""


def broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def problems(text: str) -> list[str]:
    with pytest.raises(FrameworkError) as caught:
        compile_framework(textwrap.dedent(text), file="demo.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_every_shipped_framework_validates_with_its_links() -> None:
    frameworks = registry()
    # ipd-2026 (PermenPANRB 8/2026) is an intended addition to the shipped set (issue 15).
    assert set(frameworks) == {"gmsc-2023", "spbe-2020", "smartcity-spbe-linked", "ipd-2026"}
    assert len(shipped_files()) == 4
    assert check_links(frameworks.values()) == []
    spbe = frameworks["spbe-2020"]
    assert [n.id for n in spbe.nodes() if n.is_leaf] == [f"I{i}" for i in range(1, 48)]
    assert all(n.required for n in spbe.nodes())


def test_the_good_example_compiles() -> None:
    framework = compile_framework(GOOD, file="demo.yaml")
    assert framework.index.id == "total"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "weight: 40",
            "weight: 30",
            "demo.yaml: total: weights of the children add up to 90 (60 + 30), "
            "declared weights_total 100",
        ),
        (
            "aggregation: weighted_mean",
            "aggregation: median",
            "demo.yaml: total: unknown aggregation 'median'",
        ),
        (
            "{id: b, name: B",
            "{id: a, name: B",
            "demo.yaml: total/a: duplicate id 'a' (also at total/a)",
        ),
        (
            "scale: score}\n    - {id: b",
            "scale: stars}\n    - {id: b",
            "demo.yaml: total/a: unknown scale 'stars' (known: score)",
        ),
        (
            "{id: b, name: B, weight: 40, scale: score}",
            "{id: b, name: B, weight: 40}",
            "demo.yaml: total/b: a leaf needs a 'scale'",
        ),
        (
            "  weights_total: 100\n",
            "  weights_total: 100\n  colour: red\n",
            "demo.yaml: total: unknown key 'colour'",
        ),
        (
            "{id: b, name: B, weight: 40, scale: score}",
            "{id: b, name: B, weight: 40, scale: score, input: linked, "
            "link: {framework: demo, node: a, scale: score}}",
            "demo.yaml: total/b: link cycle: links to its own framework 'demo'",
        ),
    ],
)
def test_broken_files_fail_with_file_path_and_problem(old: str, new: str, message: str) -> None:
    found = problems(broken(old, new))
    assert any(problem.startswith(message) for problem in found), found


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        (
            "[{predicate: Low, from: 0, to: 2}, {predicate: High, from: 1.5}]",
            "predicates: bands overlap at 1.5 ('Low' and 'High')",
        ),
        (
            "[{predicate: Low, from: 0, to: 2}, {predicate: High, from: 2.5}]",
            "predicates: gap between 2 and 2.5 ('Low' ends, 'High' starts)",
        ),
        (
            "[{predicate: Low, from: 1, to: 2}, {predicate: High, from: 2}]",
            "predicates: gap between the scale's start 0 and the first band at 1",
        ),
        (
            "[{predicate: Low, from: 0, to: 2}, {predicate: High, from: 2, to: 3}]",
            "predicates: the last band must be open-ended (no 'to')",
        ),
    ],
)
def test_bands_that_overlap_or_leave_gaps_are_refused(bands: str, message: str) -> None:
    text = broken("  weights_total: 100\n", f"  weights_total: 100\n  predicates: {bands}\n")
    assert f"demo.yaml: total: {message}" in problems(text)


def test_every_problem_is_reported_at_once() -> None:
    text = broken("weight: 40", "weight: 30").replace("weighted_mean", "median")
    found = problems(text.replace("{id: b, name: B", "{id: a, name: B"))
    assert len(found) == 2  # the unknown aggregation and the duplicate id


def test_links_to_unknown_frameworks_and_cycles_between_files_are_found() -> None:
    def linking(framework_id: str, target: str) -> str:
        return f"""
id: {framework_id}
name: {framework_id}
version: "1"
index:
  id: {framework_id}_total
  name: Total
  scale: {{min: 0, max: 100}}
  aggregation: mean
  children:
    - id: {framework_id}_linked
      name: Linked
      scale: {{min: 0, max: 100}}
      input: linked
      link: {{framework: {target}, node: {target}_total, scale: {{min: 0, max: 100}}}}
"""

    first = compile_framework(linking("first", "second"), file="first.yaml")
    second = compile_framework(linking("second", "first"), file="second.yaml")
    issues = [str(issue) for issue in check_links([first, second])]
    assert "first.yaml: link cycle: first → second → first" in issues
    lonely = [str(issue) for issue in check_links([first])]
    assert lonely == ["first.yaml: first_total/first_linked: links to unknown framework 'second'"]


def test_decimals_in_files_are_read_exactly() -> None:
    framework = compile_framework(
        broken(
            "weight: 60, scale: score}\n    - {id: b, name: B, weight: 40",
            "weight: 60.1, scale: score}\n    - {id: b, name: B, weight: 39.9",
        ),
        file="demo.yaml",
    )
    assert sum(child.weight for child in framework.index.children) == 100


def test_every_aggregation_a_file_may_name_has_a_rule() -> None:
    from services.scoring.engine.aggregations import RULES
    from services.scoring.engine.model import AGGREGATIONS

    assert set(RULES) | {"none"} == set(AGGREGATIONS)


def test_reported_weights_round_as_the_file_says() -> None:
    # A weight of 0.123456, reported at contribution precision (4 places): rounding "down"
    # gives 0.1234 where half-up gives 0.1235.
    from services.scoring.engine import Inputs, evaluate

    fine = GOOD.replace("weight: 60", "weight: 0.876544").replace("weight: 40", "weight: 0.123456")
    fine = fine.replace("weights_total: 100", "weights_total: 1")
    down = compile_framework("rounding: down\n" + fine, file="demo.yaml")
    half_up = compile_framework(fine, file="demo.yaml")
    inputs = Inputs(values={"a": "3", "b": "2"})
    assert evaluate(down, inputs).nodes["b"].weight == Decimal("0.1234")
    assert evaluate(half_up, inputs).nodes["b"].weight == Decimal("0.1235")
