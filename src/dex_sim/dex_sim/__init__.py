"""dex_sim: the MuJoCo counterpart of the real hardware.

:mod:`dex_sim.objects` (object sets, convex decomposition), :mod:`dex_sim.objects_gen` (the built-in
set), :mod:`dex_sim.scene` (table, robot, RGB-D camera, lights), :mod:`dex_sim.render` (RGB +
metric depth off-screen), :mod:`dex_sim.commands` (driver-like commands and their checks),
:mod:`dex_sim.env` (``SimEnv``: reset/step/render, ground truth), :mod:`dex_sim.calibration`
(camera extrinsics YAML), :mod:`dex_sim.node` (the ROS node), :mod:`dex_sim.bench`.
"""

import os as _os

# Off-screen rendering without a display: MuJoCo reads MUJOCO_GL when it is first imported, so set
# it here, before any dex_sim module imports mujoco (an explicit setting wins).
_os.environ.setdefault("MUJOCO_GL", "egl")
