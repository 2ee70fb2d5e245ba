"""Typed exceptions of dex_planning. Every message says what was wrong and, where it helps, the fix."""

from __future__ import annotations

from dex_description.errors import DescriptionError


class PlanningError(DescriptionError):
    """Base class of every error raised by dex_planning."""


class PlanningConfigError(PlanningError):
    """A planner configuration value is invalid (names the field)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"planner config field '{field}': {message}")


class InvalidInputError(PlanningError):
    """A request is malformed: NaN/inf values, wrong shapes, unknown joint names, a non-unit quaternion."""


class BackendUnavailableError(PlanningError):
    """The configured planner backend cannot run on this machine (e.g. cuRobo is not importable)."""
