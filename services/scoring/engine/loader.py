"""Reading and validating framework files (YAML).

Every problem is collected, not just the first, each with the file, the node path and what is
wrong, so a methodology author fixes a file in one pass. See docs/frameworks.md for the format.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import yaml

from services.scoring.engine.errors import FrameworkError, Issue
from services.scoring.engine.model import (
    AGGREGATIONS,
    INPUT_KINDS,
    STATUSES,
    Aggregation,
    Band,
    Framework,
    InputKind,
    LinkRule,
    MetricRule,
    Node,
    OutsideRule,
    Periods,
    Scale,
    Status,
)
from services.scoring.engine.numbers import (
    ROUNDING_MODES,
    NotANumber,
    RoundingMode,
    exact,
    plain,
)

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_TOP_KEYS = {
    "id",
    "name",
    "version",
    "family",
    "in_force",
    "status",
    "status_note",
    "source",
    "description",
    "precision",
    "contribution_precision",
    "rounding",
    "scales",
    "index",
    "views",
}
_NODE_KEYS = {
    "id",
    "name",
    "description",
    "weight",
    "weights_total",
    "scale",
    "required",
    "aggregation",
    "numerator",
    "denominator",
    "multiplier",
    "input",
    "items",
    "metric",
    "link",
    "outside",
    "predicates",
    "children",
}


class _DecimalLoader(yaml.SafeLoader):
    """YAML with decimals read as :class:`Decimal`, never as binary floats."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(cast(yaml.ScalarNode, node))).replace("_", "")
    return Decimal(text)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass


def load_framework(path: str | Path) -> Framework:
    """Read, validate and compile the framework file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameworkError([Issue(path.name, "", f"cannot read the file ({exc})")]) from None
    return compile_framework(text, file=path.name)


def compile_framework(text: str, *, file: str = "<framework>") -> Framework:
    """Validate and compile a framework from its YAML text."""
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise FrameworkError([Issue(file, "", f"not valid YAML ({exc})")]) from None
    return _Compiler(file).compile(document)


def canonical_hash(document: Any) -> str:
    """SHA-256 of the document's content, independent of formatting and key order."""
    canonical = json.dumps(document, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Compiler:
    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[Issue] = []
        self.scales: dict[str, Scale] = {}
        self.seen_ids: dict[str, str] = {}
        self.framework_id = ""

    def problem(self, path: str, message: str) -> None:
        self.issues.append(Issue(self.file, path, message))

    def compile(self, document: Any) -> Framework:
        if not isinstance(document, Mapping):
            raise FrameworkError([Issue(self.file, "", "expected a mapping at the top level")])
        for key in sorted(set(document) - _TOP_KEYS):
            self.problem("", f"unknown key {key!r}")
        self.framework_id = self._text(document, "id", "", required=True) or "?"
        if self.framework_id != "?" and not _ID.match(self.framework_id):
            self.problem("", f"framework id {self.framework_id!r} is not a valid id")
        name = self._text(document, "name", "", required=True) or ""
        version = str(document.get("version", "")) or ""
        if not version:
            self.problem("", "missing 'version'")
        precision = self._int(document, "precision", "", default=2)
        contribution_precision = self._int(
            document, "contribution_precision", "", default=precision + 2
        )
        rounding = document.get("rounding", "half_up")
        if rounding not in ROUNDING_MODES:
            self.problem("", f"unknown rounding {rounding!r} (known: {', '.join(ROUNDING_MODES)})")
            rounding = "half_up"

        for scale_name, spec in (document.get("scales") or {}).items():
            scale = self._scale(spec, f"scales/{scale_name}")
            if scale is not None:
                self.scales[str(scale_name)] = scale

        roots: list[Node] = []
        index_spec = document.get("index")
        if not isinstance(index_spec, Mapping):
            self.problem("", "missing 'index': the tree whose root is the framework's index")
        else:
            root = self._node(index_spec, "")
            if root is not None:
                roots.append(root)
                if root.is_leaf:
                    self.problem(root.path, "the index must aggregate children")
        views = document.get("views") or []
        if not isinstance(views, list):
            self.problem("", "'views' must be a list of node trees")
            views = []
        for view in views:
            node = self._node(view, "") if isinstance(view, Mapping) else None
            if node is None and not isinstance(view, Mapping):
                self.problem("views", "each view must be a node mapping")
            elif node is not None:
                roots.append(node)

        # A file that names no family is an instrument of its own; one that declares no status
        # is provisional: nothing says its figures are confirmed.
        family = self._text(document, "family", "") or self.framework_id
        if not _ID.match(family):
            self.problem("", f"family {family!r} is not a valid id")
        status = document.get("status", "provisional")
        if status not in STATUSES:
            self.problem("", f"'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        status_note = _opt_str(document.get("status_note"))
        if "status" not in document:
            status_note = status_note or "the file declares no status"
        elif status == "provisional" and not status_note:
            self.problem("", "a provisional framework needs a 'status_note' saying what is")
        in_force = self._in_force(document.get("in_force"))

        if self.issues:
            raise FrameworkError(self.issues)
        return Framework(
            id=self.framework_id,
            name=name,
            version=version,
            family=family,
            in_force=in_force,
            status=cast(Status, status),
            status_note=status_note,
            source=_opt_str(document.get("source")),
            description=_opt_str(document.get("description")),
            precision=precision,
            contribution_precision=contribution_precision,
            rounding=cast(RoundingMode, rounding),
            roots=tuple(roots),
            content_hash=canonical_hash(document),
            file=self.file,
        )

    # -- pieces -------------------------------------------------------------------------------

    def _text(
        self, spec: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = spec.get(key)
        if value is None or value == "":
            if required:
                self.problem(path, f"missing {key!r}")
            return None
        if not isinstance(value, str | int):
            self.problem(path, f"{key!r} must be text")
            return None
        return str(value)

    def _int(self, spec: Mapping[str, Any], key: str, path: str, *, default: int) -> int:
        value = spec.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 12:
            self.problem(path, f"{key!r} must be a whole number from 0 to 12, got {value!r}")
            return default
        return value

    def _number(self, value: Any, path: str, what: str) -> Fraction | None:
        try:
            return exact(value)
        except NotANumber:
            self.problem(path, f"{what} must be a number, got {value!r}")
            return None

    def _scale(self, spec: Any, path: str) -> Scale | None:
        if isinstance(spec, str):
            if spec not in self.scales:
                known = ", ".join(sorted(self.scales)) or "none declared"
                self.problem(path, f"unknown scale {spec!r} (known: {known})")
                return None
            return self.scales[spec]
        if not isinstance(spec, Mapping):
            self.problem(path, "a scale is a name from 'scales' or a mapping with min and max")
            return None
        for key in sorted(set(spec) - {"min", "max", "integer", "labels", "unit"}):
            self.problem(path, f"unknown scale key {key!r}")
        low = self._number(spec.get("min"), path, "scale min")
        high = self._number(spec.get("max"), path, "scale max")
        if low is None or high is None:
            return None
        if low >= high:
            self.problem(path, f"scale min {spec.get('min')} is not below max {spec.get('max')}")
            return None
        labels_spec = spec.get("labels") or {}
        labels: dict[int, str] = {}
        if not isinstance(labels_spec, Mapping):
            self.problem(path, "scale labels must map values to names")
        else:
            for level, label in labels_spec.items():
                if not isinstance(level, int) or not low <= level <= high:
                    self.problem(path, f"scale label for {level!r} is not a value of the scale")
                else:
                    labels[level] = str(label)
        return Scale(
            low,
            high,
            integer=bool(spec.get("integer", False)),
            labels=labels,
            unit=_opt_str(spec.get("unit")),
        )

    def _bands(self, specs: Any, path: str, scale: Scale | None, *, kind: str) -> tuple[Band, ...]:
        """Bands must be ordered, touch without overlap or gap, and cover the scale."""
        if specs is None:
            return ()
        if not isinstance(specs, list) or not specs:
            self.problem(path, f"{kind} must be a non-empty list of bands")
            return ()
        bands: list[Band] = []
        label_key = "predicate" if kind == "predicates" else "level"
        for number, spec in enumerate(specs, start=1):
            where = f"{kind}[{number}]"
            if not isinstance(spec, Mapping) or label_key not in spec or "from" not in spec:
                self.problem(path, f"{where}: a band needs {label_key!r} and 'from'")
                return ()
            lower = self._number(spec["from"], path, f"{where} 'from'")
            upper = (
                self._number(spec["to"], path, f"{where} 'to'")
                if spec.get("to") is not None
                else None
            )
            if lower is None or (spec.get("to") is not None and upper is None):
                return ()
            if upper is not None and upper <= lower:
                self.problem(path, f"{where} is empty: 'to' {spec['to']} ≤ 'from' {spec['from']}")
                return ()
            if label_key == "level":
                level = self._number(spec["level"], path, f"{where} level")
                if level is None:
                    return ()
                bands.append(Band(lower, upper, level=level))
            else:
                bands.append(Band(lower, upper, predicate=str(spec["predicate"])))
        bands.sort(key=lambda band: band.lower)
        for before, after in itertools.pairwise(bands):
            if before.upper is None or before.upper > after.lower:
                self.problem(
                    path,
                    f"{kind}: bands overlap at {plain(after.lower)} "
                    f"({_label(before)} and {_label(after)})",
                )
            elif before.upper < after.lower:
                self.problem(
                    path,
                    f"{kind}: gap between {plain(before.upper)} and {plain(after.lower)} "
                    f"({_label(before)} ends, {_label(after)} starts)",
                )
        if bands[-1].upper is not None:
            self.problem(path, f"{kind}: the last band must be open-ended (no 'to')")
        if scale is not None and bands[0].lower > scale.min:
            self.problem(
                path,
                f"{kind}: gap between the scale's start {plain(scale.min)} and the first band "
                f"at {plain(bands[0].lower)}",
            )
        if scale is not None and kind == "bands":
            for band in bands:
                if band.level is not None and not scale.contains(band.level):
                    self.problem(path, f"bands: level {plain(band.level)} is off the node's scale")
        return tuple(bands)

    def _node(self, spec: Mapping[str, Any], parent_path: str) -> Node | None:
        raw_id = spec.get("id")
        node_id = str(raw_id) if raw_id is not None else "?"
        path = f"{parent_path}/{node_id}" if parent_path else node_id
        before = len(self.issues)
        for key in sorted(set(spec) - _NODE_KEYS):
            self.problem(path, f"unknown key {key!r}")
        if raw_id is None:
            self.problem(path, "missing 'id'")
        elif not _ID.match(node_id):
            self.problem(path, f"id {node_id!r} is not a valid id (letters, digits, _ . -)")
        elif node_id in self.seen_ids:
            self.problem(path, f"duplicate id {node_id!r} (also at {self.seen_ids[node_id]})")
        else:
            self.seen_ids[node_id] = path
        name = self._text(spec, "name", path, required=True) or node_id
        weight = self._number(spec.get("weight", 1), path, "weight")
        if weight is not None and weight < 0:
            self.problem(path, f"weight {spec.get('weight')} is negative")
        scale = self._scale(spec["scale"], path) if spec.get("scale") is not None else None
        required = spec.get("required", True)
        if not isinstance(required, bool):
            self.problem(path, "'required' must be true or false")
            required = True

        children_spec = spec.get("children") or []
        if not isinstance(children_spec, list):
            self.problem(path, "'children' must be a list of nodes")
            children_spec = []
        children = [
            child
            for child in (
                self._node(child_spec, path) if isinstance(child_spec, Mapping) else None
                for child_spec in children_spec
            )
            if child is not None
        ]
        if len(children) != len(children_spec):
            for child_spec in children_spec:
                if not isinstance(child_spec, Mapping):
                    self.problem(path, f"a child must be a node mapping, got {child_spec!r}")

        predicates = self._bands(spec.get("predicates"), path, scale, kind="predicates")
        multiplier = self._number(spec.get("multiplier", 1), path, "multiplier") or Fraction(1)
        node_kwargs: dict[str, Any] = {}
        if children_spec:
            node_kwargs.update(self._inner(spec, path, children))
            for key in ("input", "items", "metric", "link", "outside"):
                if key in spec:
                    self.problem(path, f"{key!r} is for leaves; this node has children")
        else:
            node_kwargs.update(self._leaf(spec, path, scale))
            for key in ("aggregation", "weights_total", "numerator", "denominator"):
                if key in spec:
                    self.problem(path, f"{key!r} is for nodes with children; this is a leaf")
        if len(self.issues) > before or weight is None:
            return None
        return Node(
            id=node_id,
            name=name,
            path=path,
            weight=weight,
            scale=scale,
            required=required,
            children=tuple(children),
            multiplier=multiplier,
            predicates=predicates,
            description=_opt_str(spec.get("description")),
            **node_kwargs,
        )

    def _inner(self, spec: Mapping[str, Any], path: str, children: list[Node]) -> dict[str, Any]:
        aggregation = spec.get("aggregation")
        if aggregation is None:
            self.problem(path, "missing 'aggregation' for a node with children")
            return {}
        if aggregation not in AGGREGATIONS:
            self.problem(
                path, f"unknown aggregation {aggregation!r} (known: {', '.join(AGGREGATIONS)})"
            )
            return {}
        result: dict[str, Any] = {"aggregation": cast(Aggregation, aggregation)}
        child_ids = {child.id for child in children}
        if aggregation == "ratio":
            for key in ("numerator", "denominator"):
                ref = spec.get(key)
                if ref not in child_ids:
                    self.problem(path, f"ratio {key} {ref!r} is not one of this node's children")
                result[key] = ref
            if len(children) != 2:
                self.problem(path, "a ratio has exactly two children, numerator and denominator")
        if aggregation == "pooled_mean":
            for child in children:
                if not (child.is_leaf and child.items):
                    self.problem(path, f"pooled_mean child {child.id!r} is not an 'items' leaf")
        if "weights_total" in spec:
            declared = self._number(spec["weights_total"], path, "weights_total")
            total = sum((child.weight for child in children), Fraction(0))
            if declared is not None and total != declared:
                listed = " + ".join(plain(child.weight) for child in children)
                self.problem(
                    path,
                    f"weights of the children add up to {plain(total)} ({listed}), "
                    f"declared weights_total {plain(declared)}",
                )
        if aggregation == "weighted_mean" and children and not any(c.weight for c in children):
            self.problem(path, "weighted_mean over children whose weights are all zero")
        return result

    def _leaf(self, spec: Mapping[str, Any], path: str, scale: Scale | None) -> dict[str, Any]:
        kind = spec.get("input", "assessed")
        if kind not in INPUT_KINDS:
            self.problem(path, f"unknown input kind {kind!r} (known: {', '.join(INPUT_KINDS)})")
            return {}
        result: dict[str, Any] = {"input": cast(InputKind, kind), "items": False}
        if spec.get("items"):
            if kind != "assessed":
                self.problem(path, "'items' (a list of values) is for assessed leaves")
            result["items"] = True
        if scale is None:
            self.problem(path, "a leaf needs a 'scale' so its input can be checked")
        if kind == "metric":
            result["metric"] = self._metric(spec.get("metric"), path, scale)
        elif "metric" in spec:
            self.problem(path, "'metric' is only for leaves with input: metric")
        if kind == "linked":
            result["links"] = self._links(spec.get("link"), path)
        elif "link" in spec:
            self.problem(path, "'link' is only for leaves with input: linked")
        if kind == "outside":
            result["outside"] = self._outside(spec.get("outside"), path, scale)
        elif "outside" in spec:
            self.problem(path, "'outside' is only for leaves with input: outside")
        return result

    def _metric(self, spec: Any, path: str, scale: Scale | None) -> MetricRule | None:
        if not isinstance(spec, Mapping):
            self.problem(path, "input: metric needs 'metric' with 'key' or 'ratio'")
            return None
        for key in sorted(set(spec) - {"key", "ratio", "multiplier", "clamp", "bands"}):
            self.problem(path, f"unknown metric key {key!r}")
        ratio = spec.get("ratio")
        if ("key" in spec) == (ratio is not None):
            self.problem(path, "metric needs exactly one of 'key' or 'ratio: [numerator, denom]'")
            return None
        well_formed = isinstance(ratio, list) and len(ratio) == 2
        if ratio is not None and not (well_formed and all(isinstance(r, str) for r in ratio)):
            self.problem(path, "metric ratio must be [numerator key, denominator key]")
            return None
        multiplier = self._number(spec.get("multiplier", 1), path, "metric multiplier")
        bands = self._bands(spec.get("bands"), path + "/metric", None, kind="bands")
        if bands and scale is not None:
            for band in bands:
                if band.level is not None and not scale.contains(band.level):
                    self.problem(path, f"metric band level {plain(band.level)} is off the scale")
        return MetricRule(
            key=str(spec["key"]) if "key" in spec else None,
            numerator=ratio[0] if ratio else None,
            denominator=ratio[1] if ratio else None,
            multiplier=multiplier or Fraction(1),
            clamp=bool(spec.get("clamp", False)),
            bands=bands,
        )

    def _outside(self, spec: Any, path: str, scale: Scale | None) -> OutsideRule | None:
        if not isinstance(spec, Mapping):
            self.problem(
                path, "input: outside needs 'outside' with 'source' (and optionally 'absent_value')"
            )
            return None
        for key in sorted(set(spec) - {"source", "absent_value"}):
            self.problem(path, f"unknown outside key {key!r} (known: source, absent_value)")
        source = spec.get("source")
        if not isinstance(source, str) or not source.strip():
            self.problem(path, "outside: missing 'source' (the outside index and its agency)")
            return None
        absent_value = None
        if spec.get("absent_value") is not None:
            absent_value = self._number(spec["absent_value"], path, "outside absent_value")
            if absent_value is None:
                return None
            if scale is not None and not scale.contains(absent_value):
                self.problem(
                    path,
                    f"outside absent_value {plain(absent_value)} is off the node's scale "
                    f"{scale.describe()}",
                )
                return None
        return OutsideRule(source=source.strip(), absent_value=absent_value)

    def _links(self, spec: Any, path: str) -> tuple[LinkRule, ...]:
        """One source (a mapping) or one per version of an instrument (a list of mappings)."""
        specs = spec if isinstance(spec, list) else [spec]
        if not specs:
            self.problem(path, "input: linked needs 'link' with framework, node and scale")
        links = tuple(link for one in specs if (link := self._link(one, path)) is not None)
        frameworks = [link.framework for link in links]
        for framework in sorted({f for f in frameworks if frameworks.count(f) > 1}):
            self.problem(path, f"link names framework {framework!r} twice")
        return links

    def _link(self, spec: Any, path: str) -> LinkRule | None:
        if not isinstance(spec, Mapping) or not {"framework", "node", "scale"} <= set(spec):
            self.problem(path, "input: linked needs 'link' with framework, node and scale")
            return None
        framework = str(spec["framework"])
        if framework == self.framework_id:
            self.problem(path, f"link cycle: links to its own framework {framework!r}")
            return None
        scale = self._scale(spec["scale"], path + "/link")
        if scale is None:
            return None
        return LinkRule(framework=framework, node=str(spec["node"]), scale=scale)

    def _in_force(self, spec: Any) -> Periods:
        if spec is None:
            return Periods()
        if not isinstance(spec, Mapping) or set(spec) - {"from", "to"}:
            self.problem("in_force", "'in_force' is a mapping with 'from' and/or 'to' (years)")
            return Periods()
        bounds: dict[str, int | None] = {}
        for key in ("from", "to"):
            value = spec.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 1900 <= value <= 2200
            ):
                self.problem("in_force", f"'{key}' must be a year, got {value!r}")
                value = None
            bounds[key] = value
        first, last = bounds["from"], bounds["to"]
        if first is not None and last is not None and last < first:
            self.problem("in_force", f"'to' {last} is before 'from' {first}")
        return Periods(first, last)


def check_links(frameworks: Iterable[Framework]) -> list[Issue]:
    """Problems in the links between frameworks: unknown targets and cycles."""
    by_id = {framework.id: framework for framework in frameworks}
    issues: list[Issue] = []
    for framework in by_id.values():
        for node in framework.nodes():
            for link in node.links:
                target = by_id.get(link.framework)
                if target is None:
                    issues.append(
                        Issue(
                            framework.file,
                            node.path,
                            f"links to unknown framework {link.framework!r}",
                        )
                    )
                elif link.node not in {n.id for n in target.nodes()}:
                    issues.append(
                        Issue(framework.file, node.path, f"links to unknown node {link.ref!r}")
                    )
            for one, other in itertools.combinations(node.links, 2):
                first, second = by_id.get(one.framework), by_id.get(other.framework)
                if first and second and first.in_force.overlaps(second.in_force):
                    issues.append(
                        Issue(
                            framework.file,
                            node.path,
                            f"links to {one.framework} and {other.framework}, which are both "
                            f"in force for some period: only one source may count per period",
                        )
                    )
    for framework in by_id.values():
        cycle = _find_cycle(framework.id, by_id)
        if cycle:
            issues.append(Issue(framework.file, "", "link cycle: " + " → ".join(cycle)))
    return issues


def check_families(frameworks: Iterable[Framework]) -> list[Issue]:
    """Problems between the versions of one instrument: two in force for the same period."""
    by_family: dict[str, list[Framework]] = {}
    for framework in frameworks:
        by_family.setdefault(framework.family, []).append(framework)
    issues: list[Issue] = []
    for family, versions in sorted(by_family.items()):
        for one, other in itertools.combinations(versions, 2):
            if one.in_force.overlaps(other.in_force):
                issues.append(
                    Issue(
                        other.file,
                        "in_force",
                        f"{one.id} and {other.id} of family {family!r} are both in force for "
                        f"some period ({one.in_force.describe()}; {other.in_force.describe()})",
                    )
                )
    return issues


def _find_cycle(start: str, by_id: Mapping[str, Framework]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        current, trail = stack.pop()
        framework = by_id.get(current)
        if framework is None:
            continue
        for link in framework.links:
            if link.framework == start:
                return [*trail, start]
            if link.framework not in trail:
                stack.append((link.framework, [*trail, link.framework]))
    return None


def link_order(frameworks: Iterable[Framework]) -> list[str]:
    """Framework ids with every framework after the ones it links to (dependency order)."""
    by_id = {framework.id: framework for framework in frameworks}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(framework_id: str) -> None:
        if framework_id in order or framework_id not in by_id:
            return
        if framework_id in visiting:
            raise FrameworkError([Issue(by_id[framework_id].file, "", "link cycle")])
        visiting.add(framework_id)
        for link in by_id[framework_id].links:
            visit(link.framework)
        visiting.discard(framework_id)
        order.append(framework_id)

    for framework_id in sorted(by_id):
        visit(framework_id)
    return order


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value).strip() or None


def _label(band: Band) -> str:
    return (
        repr(band.predicate)
        if band.predicate is not None
        else f"level {plain(band.level or Fraction(0))}"
    )
