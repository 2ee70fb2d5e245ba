"""Typed exceptions of dex_proposal.

Bad *input clouds* are not exceptions: :func:`dex_proposal.api.propose` returns a typed
:class:`~dex_proposal.api.Status` instead. Exceptions are for programming and configuration errors
(a config field out of range, tensors of the wrong shape, a missing object file).
"""

from __future__ import annotations


class ProposalError(Exception):
    """Base class of every error raised by dex_proposal."""


class ConfigError(ProposalError):
    """A synthesis/benchmark configuration value is invalid.

    Attributes:
        field: Dotted name of the offending field, e.g. ``qp.mu``.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config field '{field}': {message}")


class ShapeError(ProposalError):
    """An array argument has the wrong shape, dtype or device."""


class ObjectSetError(ProposalError):
    """The benchmark's object set could not be loaded (missing directory, bad objects.yaml, mesh)."""
