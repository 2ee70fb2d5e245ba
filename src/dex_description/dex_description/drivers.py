"""Model joint vectors <-> the real drivers' joint vectors, from the robot YAML's ``driver`` sections.

The model (MJCF) names and conventions are what every algorithm uses; the drivers have their own
names, order and conventions (LEAP: index order 0..15 with 180 deg = flat, i.e. +pi; Shadow: commands
name the 20 actuators, ``rh_FFJ0 = rh_FFJ1 + rh_FFJ2``, while states name the 24 joints). Nodes that
talk to drivers (the sim twin, the planner's output, the orchestrator, the adapters) convert here,
in one place.

``driver = scale * model + offset`` per entry. Shapes: ``(..., n)`` arrays in the stated order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dex_description.config import DriverConfig, HandConfig, RobotConfig
from dex_description.errors import DescriptionError


class DriverMappingError(DescriptionError):
    """Names or values that do not fit a driver's joint vector."""


@dataclass(frozen=True)
class DriverMap:
    """One driver vector: entry ``i`` is ``names[i] = scale[i] * model[sources[i]] + offset[i]``.

    Attributes:
        names: Driver joint names, in driver order.
        sources: Model-space names feeding each entry (a model joint, or a hand actuator name such as
            ``rh_FFJ0`` for actuated command spaces).
        scale, offset: (n,) conversion.
    """

    names: tuple[str, ...]
    sources: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray

    def to_driver(self, model_values: Mapping[str, float] | np.ndarray, source_order: Sequence[str] | None = None) -> np.ndarray:
        """Model values -> driver vector (n,) in driver order.

        Args:
            model_values: ``{source name: value}``, or an array in ``source_order`` (default: :attr:`sources`).
        """
        if isinstance(model_values, Mapping):
            missing = [s for s in self.sources if s not in model_values]
            if missing:
                raise DriverMappingError(f"missing values for {', '.join(missing)}")
            x = np.array([model_values[s] for s in self.sources], dtype=np.float64)
        else:
            arr = np.asarray(model_values, dtype=np.float64)
            order = list(source_order) if source_order is not None else list(self.sources)
            if arr.shape[-1] != len(order):
                raise DriverMappingError(f"expected {len(order)} values, got {arr.shape[-1]}")
            idx = {n: i for i, n in enumerate(order)}
            try:
                x = arr[..., [idx[s] for s in self.sources]]
            except KeyError as exc:
                raise DriverMappingError(f"source order lacks {exc}") from None
        return self.scale * x + self.offset

    def from_driver(self, names: Sequence[str], values: Sequence[float], require_all: bool = False) -> dict[str, float]:
        """Driver names + values (any order, any subset) -> ``{source name: model value}``.

        Raises:
            DriverMappingError: Unknown or duplicate names, length mismatch, non-finite values, or
                (``require_all``) missing names.
        """
        names = [str(n) for n in names]
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(names) != vals.shape[0]:
            raise DriverMappingError(f"{len(names)} names but {vals.shape[0]} values")
        if len(set(names)) != len(names):
            raise DriverMappingError(f"duplicate joint names in {names}")
        index = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise DriverMappingError(f"unknown joint name(s) {', '.join(unknown)}; expected {', '.join(self.names)}")
        if not np.all(np.isfinite(vals)):
            raise DriverMappingError("non-finite value(s) " + ", ".join(n for n, v in zip(names, vals) if not np.isfinite(v)))
        if require_all and len(names) != len(self.names):
            raise DriverMappingError(f"missing joint name(s) {', '.join(n for n in self.names if n not in names)}")
        out = {}
        for n, v in zip(names, vals):
            i = index[n]
            out[self.sources[i]] = float((v - self.offset[i]) / self.scale[i])
        return out


def _map(driver: DriverConfig, default_sources: Sequence[str]) -> DriverMap:
    if driver.joints:
        return DriverMap(
            tuple(d.name for d in driver.joints), tuple(d.joint for d in driver.joints),
            np.array([d.scale for d in driver.joints]), np.array([d.offset for d in driver.joints]),
        )
    n = len(default_sources)
    return DriverMap(tuple(default_sources), tuple(default_sources), np.ones(n), np.zeros(n))


def arm_map(cfg: RobotConfig) -> DriverMap:
    """The arm driver's vector (UR: the joint_trajectory_controller's joint names)."""
    return _map(cfg.arm.driver, cfg.arm.joints)


def hand_state_map(hand: HandConfig) -> DriverMap:
    """The hand driver's *state* vector (all joints)."""
    return _map(hand.driver, hand.joints)


def hand_command_map(hand: HandConfig) -> DriverMap:
    """The hand driver's *command* vector: joints, or actuators when ``command_space: actuated``
    (sources are then actuator names; convert with ``HandConfig.actuated_from_joints``)."""
    if hand.driver.command_space == "actuated":
        if hand.driver.joints:
            raise DriverMappingError("an actuated command space with an explicit joint mapping is not supported")
        return _map(hand.driver, hand.actuated_names)
    return _map(hand.driver, hand.joints)
