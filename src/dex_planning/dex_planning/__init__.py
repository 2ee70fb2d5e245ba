"""dex_planning: ranked grasp proposals -> IK -> collision-free, time-parameterised arm trajectory.

ROS-free interface (:mod:`dex_planning.planner`, :mod:`dex_planning.interface`)::

    from dex_description.compose import load_robot
    from dex_planning import default_config, make_planner, make_target, default_scene

    robot = load_robot("ur5e_leap")
    planner = make_planner(robot, default_config())            # backend "cpu" (default) or "curobo"
    target = make_target(robot, "p0", position, quat_wxyz, joint_names, joint_positions)
    result = planner.select(start_q, start_hand_q, [target], default_scene(cloud=points))
    result.status, result.arm, result.hand, result.rejections

Backends: :mod:`dex_planning.cpu` (closed-form UR IK + Pinocchio/coal + OMPL + TOPP-RA) and
:mod:`dex_planning.curobo_backend` (cuRobo's MotionGen; imported only when selected).
The ROS node is :mod:`dex_planning.node`; the benchmark ``python -m dex_planning.bench``.
Heavy modules (pinocchio, ompl, toppra) load on first use of a planner.
"""

from dex_planning.config import PlannerConfig, default_config, load_config, override
from dex_planning.errors import (
    BackendUnavailableError,
    InvalidInputError,
    PlanningConfigError,
    PlanningError,
)
from dex_planning.interface import ProposalTarget, Rejection, SelectionResult, Trajectory
from dex_planning.planner import ArmPlanner, make_planner, make_target
from dex_planning.scene import Box, PlanningScene, default_scene, table_box

__all__ = [
    "ArmPlanner", "BackendUnavailableError", "Box", "InvalidInputError", "PlannerConfig", "PlanningConfigError",
    "PlanningError", "PlanningScene", "ProposalTarget", "Rejection", "SelectionResult",
    "Trajectory", "default_config", "default_scene", "load_config", "make_planner", "make_target", "override",
    "table_box",
]
