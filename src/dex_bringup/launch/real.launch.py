"""ros2 launch dex_bringup real.launch.py [robot:=ur5e_leap ...]: the dexgrasp graph in 'real' mode.

The graph is config/graph/dexgrasp.yaml; `dexgrasp launch real` (pip venv) starts the same nodes.
"""

from dex_bringup.launch_common import generate


def generate_launch_description():
    return generate("real")
