"""colcon (ament_python) entry for dex_description; the pip path installs it from the root pyproject.toml.

The repository's top-level ``config/`` (robots, model manifests, graph, objects, calibration) is
installed into ``share/dex_description/config`` where :mod:`dex_description.paths` finds it.
"""
import glob
import os

from setuptools import setup

PKG = "dex_description"
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.relpath(os.path.join(HERE, "..", "..", "config"), HERE)


def _tree(src_dir: str, dst_dir: str):
    """data_files entries for every file below ``src_dir`` (relative to this file)."""
    out = {}
    for path in glob.glob(os.path.join(src_dir, "**", "*"), recursive=True):
        if os.path.isfile(path):
            rel = os.path.relpath(os.path.dirname(path), src_dir)
            out.setdefault(os.path.normpath(os.path.join(dst_dir, rel)), []).append(path)
    return sorted(out.items())


setup(
    name=PKG,
    version="0.1.0",
    packages=[PKG],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PKG]),
        ("share/" + PKG, ["package.xml"]),
    ]
    + _tree(CONFIG, f"share/{PKG}/config"),
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    entry_points={"console_scripts": ["dexgrasp-description = dex_description.cli:main"]},
)
