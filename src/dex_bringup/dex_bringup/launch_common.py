"""The body of ``sim.launch.py`` and ``real.launch.py``: the graph YAML turned into launch actions.

Imported only under ``ros2 launch`` (needs the ``launch`` and ``launch_ros`` packages of a full
ROS 2 install); the node list comes from :meth:`dex_bringup.graph.Graph.resolve`, exactly as for
``dexgrasp launch``.
"""

from __future__ import annotations

import sys


def generate(mode: str):
    """A ``LaunchDescription`` for ``mode`` (``sim`` or ``real``)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from dex_bringup.graph import load_graph

    graph = load_graph()
    arguments = graph.arguments_for(mode)
    defaults = graph.defaults_for(mode)

    def nodes(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        for problem in graph.missing_files(mode, values):  # e.g. no camera calibration yet: say how to make one
            print(f"[dexgrasp] error: {problem}", file=sys.stderr)
        return [
            Node(
                package=n.package,
                executable=n.executable,
                name=n.name,
                parameters=[dict(n.parameters)],
                remappings=[tuple(r) for r in n.remappings],
                output="screen",
            )
            for n in graph.resolve(mode, values)
        ]

    declared = [DeclareLaunchArgument(name, default_value=defaults[name], description=a.description)
                for name, a in arguments.items()]
    return LaunchDescription(declared + [OpaqueFunction(function=nodes)])
