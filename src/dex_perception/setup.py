"""colcon (ament_python) entry for dex_perception; the pip path installs it from the root pyproject.toml."""
from setuptools import setup

setup(
    name="dex_perception",
    version="0.1.0",
    packages=["dex_perception"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/dex_perception"]),
        ("share/dex_perception", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "perception_node = dex_perception.node:main",
        "perception_bench = dex_perception.bench:main",
    ]},
)
