"""`cerdas score` and `cerdas frameworks validate` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CERDAS = [sys.executable, "-m", "services.cli"]


def cerdas(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CERDAS, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, document: object, name: str = "input.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_score_prints_the_bekasi_result_as_json(tmp_path: Path) -> None:
    # Numbers as JSON numbers: read as decimals, never as binary floats.
    path = write(
        tmp_path,
        '{"values": {"baseline": 3.48, "output": 2.34, "outcome": 3.00, '
        '"impact": 2.70, "quickwin": 2.75}}',
    )
    run = cerdas("score", "--framework", "gmsc-2023", "--input", path)
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["framework"] == "gmsc-2023"
    assert output["index"] == "2.81"
    assert output["predicate"] is None
    assert output["nodes"]["outcome"]["value"] == "3.00"
    assert output["nodes"]["outcome"]["contribution"] == "0.9000"


def test_score_accepts_a_framework_file_path(tmp_path: Path) -> None:
    framework = Path("services/scoring/frameworks/spbe-2020.yaml").resolve()
    path = write(tmp_path, {"values": {f"I{n}": 3 for n in range(1, 48)}})
    run = cerdas("score", "--framework", str(framework), "--input", path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["index"] == "3.00"
    assert json.loads(run.stdout)["predicate"] == "Baik"


def test_explain_prints_a_table_of_the_tree(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "values": {
                "baseline": "3.48",
                "output": "2.34",
                "outcome": "3",
                "impact": "2.7",
                "quickwin": "2.75",
            }
        },
    )
    run = cerdas("score", "--framework", "gmsc-2023", "--input", path, "--explain")
    assert run.returncode == 0, run.stderr
    assert "Quick Win (Program Percepatan)" in run.stdout
    assert "0.5500" in run.stdout
    assert "index 2.81" in run.stdout


@pytest.mark.parametrize(
    ("framework", "document", "message"),
    [
        ("spbe-2020", {"values": {"I48": 3}}, "unknown node 'I48' in spbe-2020"),
        ("spbe-2020", {"values": {"I1": 6}}, "I1: value 6 is off the scale whole numbers 1–5"),
        ("spbe-2020", {"values": {"I1": "2.5"}}, "I1: value 2.5 is off the scale"),
        (
            "gmsc-2023",
            {"values": {"baseline": 3}},
            "missing required value for output, outcome, impact, quickwin",
        ),
        ("gmsc-2023", {"values": {"baseline": "high"}}, "baseline: 'high' is not a number"),
        ("gmsc-2023", {"scores": {}}, "unknown key 'scores'"),
        ("gmsc-2024", {"values": {}}, "unknown framework 'gmsc-2024'"),
        ("gmsc-2023", "{not json", "is not valid JSON"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(
    tmp_path: Path, framework: str, document: object, message: str
) -> None:
    run = cerdas("score", "--framework", framework, "--input", write(tmp_path, document))
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert message in lines[0]


def test_unreadable_input_file_exits_2(tmp_path: Path) -> None:
    run = cerdas("score", "--framework", "gmsc-2023", "--input", str(tmp_path / "absent.json"))
    assert run.returncode == 2
    assert "cannot read input file" in run.stderr


def test_frameworks_validate(tmp_path: Path) -> None:
    shipped = sorted(str(p) for p in Path("services/scoring/frameworks").glob("*.yaml"))
    run = cerdas("frameworks", "validate", *shipped)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("ok: ") == 4  # ipd-2026 added intentionally (issue 15)
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(shipped[-1]).read_text().replace("weight: 2.50", "weight: 2.40", 1))
    run = cerdas("frameworks", "validate", str(bad))
    assert run.returncode == 1
    assert (
        "bad.yaml: spbe/D2/A2: weights of the children add up to 9.9 (2.4 + 2.5 + 2.5 + 2.5), "
        "declared weights_total 10"
    ) in run.stderr


BEKASI_SPBE = {f"I{n}": 4 for n in range(1, 48)} | {
    f"I{n}": 3 for n in (19, 20, *range(21, 29))
}  # 3.83, tests/scoring/test_planner.py


def test_plan_prints_the_cheapest_steps_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, {"values": BEKASI_SPBE})
    run = cerdas("plan", "--framework", "spbe-2020", "--input", path, "--target", "Memuaskan")
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert (output["reachable"], output["cost"], output["index"]) == (True, "13", "4.20")
    assert output["predicate"] == "Memuaskan"
    assert output["current"] == {"index": "3.83", "predicate": "Sangat Baik"}
    assert {step["node"] for step in output["steps"]} >= {f"I{n}" for n in range(42, 48)}
    # Costs in days: the A8 indicators at 3 days a step drop out of the plan.
    costs = write(tmp_path, {f"I{n}": 3 for n in range(42, 48)}, "costs.json")
    run = cerdas(
        "plan", "--framework", "spbe-2020", "--input", path, "--target", "4.20", "--costs", costs
    )
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["cost"] == "14"
    assert not {step["node"] for step in output["steps"]} & {f"I{n}" for n in range(42, 48)}


def test_plan_with_a_decimal_increment(tmp_path: Path) -> None:
    path = write(tmp_path, {"values": {"I20": "2.00"}})
    run = cerdas(
        "plan",
        "--framework",
        "ipd-2026",
        "--input",
        path,
        "--target",
        "1.50",
        "--increment",
        "0.5",
    )
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["increment"] == "0.5"
    assert {note["node"] for note in output["excluded"]} == {"I5", "I6", "I7", "I18"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "Istimewa"), "target 'Istimewa' is neither a predicate"),
        (("--target", "6"), "target 6 is off the index scale 1–5 of spbe-2020"),
        (("--target", "4", "--increment", "-1"), "increment -1 is not positive"),
        (("--target", "4", "--costs", "missing.json"), "cannot read costs file"),
    ],
)
def test_plan_refuses_bad_input_in_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = write(tmp_path, {"values": BEKASI_SPBE})
    run = cerdas("plan", "--framework", "spbe-2020", "--input", path, *args)
    assert run.returncode == 2
    assert run.stderr.startswith("cerdas: ")
    assert message in run.stderr
    assert run.stderr.count("\n") == 1
    assert run.stdout == ""
