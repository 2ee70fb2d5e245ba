"""Camera extrinsics as a calibration YAML, the way a real user gets them (easy_handeye2 layout).

The sim knows its camera exactly; it writes the same kind of file a hand-eye calibration
produces, so that perception reads extrinsics in sim and on the robot the same way::

    # base_link -> camera_color_optical_frame (eye on base)
    parameters:
      calibration_type: eye_on_base
      robot_base_frame: base_link
      tracking_base_frame: camera_color_optical_frame
    transform:
      translation: {x: 0.75, y: 1.45, z: 1.05}                 # [m]
      rotation: {x: ..., y: ..., z: ..., w: ...}              # ROS order (x, y, z, w)

``transform`` is ``base_T_optical``: it maps optical-frame coordinates (z forward, x right,
y down) into the robot base frame. Note the quaternion order is ROS's (x, y, z, w), not the
(w, x, y, z) used elsewhere in dexgrasp.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import yaml

from dex_sim.commands import SimError


def write_calibration(path: str | Path, base_T_optical: np.ndarray, base_frame: str = "base_link",
                      optical_frame: str = "camera_color_optical_frame", note: str = "") -> Path:
    """Write ``base_T_optical`` (4, 4) as an easy_handeye2-style YAML. Returns the path."""
    T = np.asarray(base_T_optical, dtype=np.float64)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(T[:3, :3]).reshape(9))
    if q[0] < 0:
        q = -q
    data = {
        "parameters": {"calibration_type": "eye_on_base", "robot_base_frame": base_frame,
                       "tracking_base_frame": optical_frame, "freehand_robot_movement": False},
        "transform": {
            "translation": {k: float(round(v, 9)) for k, v in zip("xyz", T[:3, 3])},
            "rotation": {"x": float(round(q[1], 12)), "y": float(round(q[2], 12)), "z": float(round(q[3], 12)),
                         "w": float(round(q[0], 12))},
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (f"# Camera extrinsics {base_frame} -> {optical_frame} (base_T_optical), easy_handeye2 layout.\n"
            "# Translation [m]; rotation quaternion in ROS order (x, y, z, w).\n")
    if note:
        head += f"# {note}\n"
    path.write_text(head + yaml.safe_dump(data, sort_keys=False))
    return path


def read_calibration(path: str | Path) -> tuple[np.ndarray, str, str]:
    """(base_T_optical (4, 4), base frame, optical frame) from a file written by :func:`write_calibration`.

    Raises:
        SimError: Missing keys or a non-unit quaternion.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
        t, r = data["transform"]["translation"], data["transform"]["rotation"]
        q = np.array([r["w"], r["x"], r["y"], r["z"]], dtype=np.float64)
        pos = np.array([t["x"], t["y"], t["z"]], dtype=np.float64)
        params = data.get("parameters", {})
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SimError(f"{path}: not a calibration file ({exc})") from exc
    if abs(np.linalg.norm(q) - 1) > 1e-6:
        raise SimError(f"{path}: rotation is not a unit quaternion")
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, q)
    T = np.eye(4)
    T[:3, :3] = m.reshape(3, 3)
    T[:3, 3] = pos
    return T, params.get("robot_base_frame", "base_link"), params.get("tracking_base_frame", "camera_color_optical_frame")
