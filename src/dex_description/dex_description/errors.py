"""Typed exceptions of dex_description. Every message names the file and, where it applies, the field."""

from __future__ import annotations

from pathlib import Path


class DescriptionError(Exception):
    """Base class of every error raised by dex_description."""


class ModelFileError(DescriptionError):
    """A model file (MJCF, mesh, licence) is missing, unreadable, corrupt or fails to compile.

    Attributes:
        path: The offending file.
    """

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class RobotConfigError(DescriptionError):
    """A robot YAML is malformed or disagrees with its model.

    Attributes:
        path: The YAML file.
        field: Dotted path of the offending field, e.g. ``hand.joints[3]``.
    """

    def __init__(self, path: str | Path, field: str, message: str):
        self.path = Path(path)
        self.field = field
        super().__init__(f"{self.path}: field '{field}': {message}")


class UnknownRobotError(DescriptionError):
    """No robot YAML with the requested name exists.

    Attributes:
        name: The requested robot name.
        available: Names that do exist.
    """

    def __init__(self, name: str, available: list[str], search_dir: str | Path):
        self.name = name
        self.available = list(available)
        super().__init__(
            f"unknown robot '{name}': no {Path(search_dir) / (name + '.yaml')}; "
            f"available: {', '.join(self.available) or '(none)'}"
        )
