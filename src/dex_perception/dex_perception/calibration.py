"""Camera extrinsics from a hand-eye calibration YAML (easy_handeye2 style).

Accepted layouts (all give ``parent_T_child``, the pose of the camera's optical frame in the robot
base frame; quaternions here are ROS-ordered ``x, y, z, w`` as in the files)::

    # flat (what dex_sim writes to config/calibration/sim_camera.yaml)
    parent_frame: base_link
    child_frame: camera_color_optical_frame
    translation: {x: 0.75, y: 1.45, z: 1.05}
    rotation: {x: ..., y: ..., z: ..., w: ...}

    # easy_handeye2 (.calib, ROS 2)
    parameters: {calibration_type: eye_on_base, robot_base_frame: base_link,
                 tracking_base_frame: camera_color_optical_frame, ...}
    transform: {translation: {x, y, z}, rotation: {x, y, z, w}}

    # easy_handeye (ROS 1 / early ROS 2)
    parameters: {eye_on_hand: false, robot_base_frame: base_link, tracking_base_frame: ...}
    transformation: {x, y, z, qx, qy, qz, qw}

Only eye-on-base (static camera) calibrations are supported: an eye-in-hand calibration needs the
arm's live TF, which this ROS-free module does not have, and raises :class:`CalibrationError`.
A file whose parent is the camera and child the base frame is inverted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from dex_perception.errors import CalibrationError


@dataclass(frozen=True)
class Extrinsics:
    """A static camera pose.

    Attributes:
        base_T_camera: (4, 4) pose of the camera optical frame in the base frame [m].
        base_frame: Parent frame name (e.g. ``base_link``).
        camera_frame: Child frame name (e.g. ``camera_color_optical_frame``).
        source: File it was read from ("" if built in code).
    """

    base_T_camera: np.ndarray
    base_frame: str = "base_link"
    camera_frame: str = "camera_color_optical_frame"
    source: str = ""

    @property
    def camera_position(self) -> np.ndarray:
        """(3,) camera centre in the base frame [m]."""
        return self.base_T_camera[:3, 3].copy()


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion given as ROS-ordered (x, y, z, w)."""
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat_xyzw(rot: np.ndarray) -> np.ndarray:
    """ROS-ordered unit quaternion (x, y, z, w) of a (3, 3) rotation (w >= 0)."""
    m = np.asarray(rot, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def _vector(path: Path, node: Any, keys: tuple[str, ...], field: str) -> np.ndarray:
    if not isinstance(node, Mapping):
        raise CalibrationError(path, field, f"must be a mapping with keys {', '.join(keys)}, got {node!r}")
    values = []
    for key in keys:
        if key not in node:
            raise CalibrationError(path, f"{field}.{key}", "missing")
        v = node[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CalibrationError(path, f"{field}.{key}", f"must be a finite number, got {v!r}")
        values.append(float(v))
    return np.asarray(values)


def _frames(path: Path, doc: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(parent, child, eye_in_hand) of any accepted layout."""
    if "parent_frame" in doc or "child_frame" in doc:
        parent, child = doc.get("parent_frame"), doc.get("child_frame")
        if not isinstance(parent, str) or not parent:
            raise CalibrationError(path, "parent_frame", f"must be a non-empty string, got {parent!r}")
        if not isinstance(child, str) or not child:
            raise CalibrationError(path, "child_frame", f"must be a non-empty string, got {child!r}")
        return parent, child, False
    params = doc.get("parameters")
    if not isinstance(params, Mapping):
        raise CalibrationError(path, "parameters", "missing: need parent_frame/child_frame or an easy_handeye2 "
                               "'parameters' block (robot_base_frame, tracking_base_frame)")
    eye_in_hand = bool(params.get("eye_on_hand", False)) or params.get("calibration_type") == "eye_in_hand"
    parent = params.get("robot_effector_frame") if eye_in_hand else params.get("robot_base_frame")
    child = params.get("tracking_base_frame")
    for name, value in (("robot_base_frame" if not eye_in_hand else "robot_effector_frame", parent),
                        ("tracking_base_frame", child)):
        if not isinstance(value, str) or not value:
            raise CalibrationError(path, f"parameters.{name}", f"must be a non-empty string, got {value!r}")
    return parent, child, eye_in_hand


def extrinsics_from_dict(doc: Any, base_frame: str = "base_link", path: str | Path = "<dict>") -> Extrinsics:
    """Parse an already loaded calibration document (see the module docstring)."""
    path = Path(path)
    if not isinstance(doc, Mapping):
        raise CalibrationError(path, "", f"expected a YAML mapping, got {type(doc).__name__}")
    parent, child, eye_in_hand = _frames(path, doc)
    if eye_in_hand:
        raise CalibrationError(path, "parameters", "eye-in-hand calibration (camera on the robot): needs the arm's "
                               "TF at each frame; only eye-on-base (static camera) calibrations are supported")
    if "transformation" in doc and "transform" not in doc and "translation" not in doc:
        node = doc["transformation"]
        t = _vector(path, node, ("x", "y", "z"), "transformation")
        q = _vector(path, node, ("qx", "qy", "qz", "qw"), "transformation")
    else:
        prefix, node = ("transform.", doc["transform"]) if "transform" in doc else ("", doc)
        if not isinstance(node, Mapping):
            raise CalibrationError(path, "transform", f"must be a mapping, got {node!r}")
        t = _vector(path, node.get("translation"), ("x", "y", "z"), prefix + "translation")
        q = _vector(path, node.get("rotation"), ("x", "y", "z", "w"), prefix + "rotation")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-3:
        raise CalibrationError(path, "rotation", f"quaternion must have unit norm (got {norm:.6f})")
    out = np.eye(4)
    out[:3, :3] = quat_xyzw_to_matrix(q / norm)
    out[:3, 3] = t
    if parent == base_frame:
        return Extrinsics(out, parent, child, str(path))
    if child == base_frame:  # the file stores camera_T_base: invert
        inv = np.eye(4)
        inv[:3, :3] = out[:3, :3].T
        inv[:3, 3] = -out[:3, :3].T @ out[:3, 3]
        return Extrinsics(inv, child, parent, str(path))
    raise CalibrationError(path, "parent_frame", f"the calibration relates '{parent}' -> '{child}'; neither is the "
                           f"robot base frame '{base_frame}'")


def load_extrinsics(path: str | Path, base_frame: str = "base_link") -> Extrinsics:
    """Read a calibration YAML; :class:`CalibrationError` names the file and field on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(path, "", f"cannot read the calibration file: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationError(path, "", f"not valid YAML: {exc}") from None
    return extrinsics_from_dict(doc, base_frame, path)


def extrinsics_from_transform(translation, rotation_xyzw, base_frame: str, camera_frame: str,
                              source: str = "tf") -> Extrinsics:
    """Extrinsics from a ``geometry_msgs/Transform``-like pose of the camera in the base frame
    (what ``tf2_ros.Buffer.lookup_transform(base_frame, camera_frame, time)`` returns).

    Raises:
        CalibrationError: Non-finite values or a quaternion far from unit norm.
    """
    t = np.asarray(translation, dtype=np.float64).reshape(3)
    q = np.asarray(rotation_xyzw, dtype=np.float64).reshape(4)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
        raise CalibrationError(source, "transform", f"non-finite transform {t.tolist()} {q.tolist()}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-3:
        raise CalibrationError(source, "rotation", f"quaternion must have unit norm (got {norm:.6f})")
    out = np.eye(4)
    out[:3, :3] = quat_xyzw_to_matrix(q / norm)
    out[:3, 3] = t
    return Extrinsics(out, base_frame, camera_frame, source)


def extrinsics_to_dict(ext: Extrinsics) -> dict[str, Any]:
    """The flat layout (inverse of :func:`extrinsics_from_dict`)."""
    q = matrix_to_quat_xyzw(ext.base_T_camera[:3, :3])
    t = ext.base_T_camera[:3, 3]
    return {
        "parent_frame": ext.base_frame,
        "child_frame": ext.camera_frame,
        "translation": {"x": float(t[0]), "y": float(t[1]), "z": float(t[2])},
        "rotation": {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])},
    }
