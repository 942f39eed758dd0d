"""The scoring engine: frameworks as data, exact arithmetic, explained results. No I/O.

Typical use::

    framework = load_framework("services/scoring/frameworks/gmsc-2023.yaml")
    result = evaluate(framework, Inputs(values={"baseline": "3.48", ...}))
    result.index.value  # Decimal('2.81')
"""

from services.scoring.engine.errors import FrameworkError, InputError, Issue
from services.scoring.engine.evaluate import Inputs, evaluate, evaluate_index
from services.scoring.engine.loader import (
    check_families,
    check_links,
    compile_framework,
    link_order,
    load_framework,
)
from services.scoring.engine.model import (
    Band,
    Framework,
    LinkRule,
    MetricRule,
    Node,
    OutsideRule,
    Periods,
    Scale,
)
from services.scoring.engine.numbers import exact, round_exact
from services.scoring.engine.planner import Plan, PlanError, Target, parse_target, plan
from services.scoring.engine.result import NodeResult, Result

__all__ = [
    "Band",
    "Framework",
    "FrameworkError",
    "InputError",
    "Inputs",
    "Issue",
    "LinkRule",
    "MetricRule",
    "Node",
    "NodeResult",
    "OutsideRule",
    "Periods",
    "Plan",
    "PlanError",
    "Result",
    "Scale",
    "Target",
    "check_families",
    "check_links",
    "compile_framework",
    "evaluate",
    "evaluate_index",
    "exact",
    "link_order",
    "load_framework",
    "parse_target",
    "plan",
    "round_exact",
]
