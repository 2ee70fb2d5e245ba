"""Where dexgrasp finds its files, in every way it can be installed.

Three layouts, tried in this order (no ``AMENT_PREFIX_PATH`` needed for any of them):

1. an explicit override from the environment (``DEXGRASP_CONFIG_DIR``, ``DEXGRASP_MODEL_DIR``);
2. the source tree (git checkout, ``pip install -e``): ``<repo>/config``, ``<repo>/src/<pkg>/...``;
3. an install prefix (colcon ``install/<pkg>``, a wheel in a venv): the module sits in
   ``<prefix>/lib/pythonX.Y/site-packages/<pkg>/`` and data in ``<prefix>/share/<pkg>/``;

and finally the ament index, when ``ament_index_python`` is importable and knows the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from dex_description.errors import DescriptionError

_HERE = Path(__file__).resolve()


def repo_root() -> Path | None:
    """The source checkout this module runs from (``<root>/src/dex_description/dex_description/``,
    also through ``pip install -e`` or colcon's ``--symlink-install``), or ``None`` when it runs
    from an install (a colcon install space inside a checkout does not count)."""
    root = _HERE.parents[3]
    if _HERE.parents[1] == root / "src" / "dex_description" and (root / "config").is_dir():
        return root
    return None


def _install_prefixes(module_file: Path) -> list[Path]:
    """Install prefixes implied by a module path ``<prefix>/lib/pythonX.Y/site-packages/...``."""
    out = []
    parts = module_file.parts
    for i, part in enumerate(parts):
        if part in ("site-packages", "dist-packages") and i >= 3 and parts[i - 2] == "lib":
            out.append(Path(*parts[: i - 2]))
    return out


def find_share(package: str, relpath: str, source_relpath: str | None = None) -> Path:
    """Locate a data file or directory shipped with ``package``.

    Args:
        package: ROS package name, e.g. ``"dex_bringup"``.
        relpath: Path below ``share/<package>/`` in an install, e.g. ``"launch/sim.launch.py"``.
        source_relpath: Path below the repository root in a source checkout; default
            ``src/<package>/<relpath>``.

    Returns:
        The existing path.

    Raises:
        DescriptionError: Nowhere to be found; the message lists every place tried.
    """
    tried: list[Path] = []
    root = repo_root()
    if root is not None:
        cand = root / (source_relpath if source_relpath is not None else f"src/{package}/{relpath}")
        tried.append(cand)
        if cand.exists():
            return cand
    for prefix in _install_prefixes(_HERE):
        cand = prefix / "share" / package / relpath
        tried.append(cand)
        if cand.exists():
            return cand
    try:  # a sourced ROS workspace
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            cand = Path(get_package_share_directory(package)) / relpath
            tried.append(cand)
            if cand.exists():
                return cand
        except (PackageNotFoundError, ValueError, LookupError):
            pass
    except ImportError:
        pass
    raise DescriptionError(
        f"cannot find '{relpath}' of package '{package}'; looked in: " + ", ".join(str(t) for t in tried)
    )


def config_dir() -> Path:
    """The directory holding ``robots/`` and ``models/`` (``DEXGRASP_CONFIG_DIR`` overrides)."""
    env = os.environ.get("DEXGRASP_CONFIG_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DescriptionError(f"DEXGRASP_CONFIG_DIR={env} is not a directory")
        return path
    return find_share("dex_description", "config", source_relpath="config")


def model_dir() -> Path:
    """Where fetched robot models live (``DEXGRASP_MODEL_DIR`` overrides).

    Default: ``$XDG_CACHE_HOME/dexgrasp/models`` (``~/.cache/dexgrasp/models``). The directory may not
    exist yet; :func:`dex_description.models.fetch` creates it.
    """
    env = os.environ.get("DEXGRASP_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dexgrasp" / "models"
