"""Errors of the engine: a framework file that is wrong, or inputs that do not fit it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a framework file: where (file, node path) and what."""

    file: str
    path: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.problem}"


class FrameworkError(Exception):
    """A framework file is invalid; ``issues`` lists every problem found, each with its place."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


class InputError(ValueError):
    """Inputs do not fit the framework: unknown node, value out of scale, missing required value."""

    def __init__(self, problem: str, node: str | None = None) -> None:
        self.problem = problem
        self.node = node
        super().__init__(problem)
