"""colcon (ament_python) entry for dex_planning; the pip path installs it from the root pyproject.toml."""
from setuptools import setup

setup(
    name="dex_planning",
    version="0.1.0",
    packages=["dex_planning"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/dex_planning"]),
        ("share/dex_planning", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "planning_node = dex_planning.node:main",
        "planning_bench = dex_planning.bench:main",
    ]},
)
