"""colcon (ament_python) entry for dex_proposal; the pip path installs it from the root pyproject.toml."""
from setuptools import setup

setup(
    name="dex_proposal",
    version="0.1.0",
    packages=["dex_proposal"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/dex_proposal"]),
        ("share/dex_proposal", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "proposal_node = dex_proposal.node:main",
        "proposal_bench = dex_proposal.bench:main",
    ]},
)
