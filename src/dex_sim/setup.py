"""colcon (ament_python) entry for dex_sim; the pip path installs it from the root pyproject.toml."""
from setuptools import setup

setup(
    name="dex_sim",
    version="0.1.0",
    packages=["dex_sim"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/dex_sim"]),
        ("share/dex_sim", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": ["sim_node = dex_sim.node:main"]},
)
