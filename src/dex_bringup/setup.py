"""colcon (ament_python) entry for dex_bringup; the pip path installs it from the root pyproject.toml."""
import glob

from setuptools import setup

PKG = "dex_bringup"

setup(
    name=PKG,
    version="0.1.0",
    packages=[PKG],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PKG]),
        ("share/" + PKG, ["package.xml"]),
        ("share/" + PKG + "/launch", glob.glob("launch/*.launch.py")),
        ("share/" + PKG + "/rviz", glob.glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": ["dexgrasp = dex_bringup.cli:main", "robot_markers = dex_bringup.robot_markers:main",
                                      "leap_adapter = dex_bringup.leap_adapter:main",
                                      "shadow_adapter = dex_bringup.shadow_adapter:main",
                                      "orchestrator = dex_bringup.orchestrator:main"]},
)
