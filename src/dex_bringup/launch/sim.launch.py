"""ros2 launch dex_bringup sim.launch.py [robot:=ur5e_leap ...]: the dexgrasp graph in 'sim' mode.

The graph is config/graph/dexgrasp.yaml; `dexgrasp launch sim` (pip venv) starts the same nodes.
"""

from dex_bringup.launch_common import generate


def generate_launch_description():
    return generate("sim")
