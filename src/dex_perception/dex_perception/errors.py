"""Typed exceptions of dex_perception.

Every error carries a machine-readable :attr:`PerceptionError.status` (the strings of
``dex_interfaces/srv/SegmentObject``'s ``status`` field) so the node can report it without
parsing messages.
"""

from __future__ import annotations

from pathlib import Path


class PerceptionError(Exception):
    """Base class of every error raised by dex_perception.

    Attributes:
        status: Machine-readable status, e.g. ``"empty_depth"``.
    """

    status = "error"


class ImageError(PerceptionError):
    """A depth or colour image cannot be decoded (unknown encoding, data length, step, shape)."""

    status = "bad_image"


class EncodingError(ImageError):
    """The image encoding is not supported (depth: ``16UC1``/``mono16`` [mm], ``32FC1`` [m])."""

    status = "bad_encoding"


class SizeMismatchError(ImageError):
    """Depth image, colour image and camera info disagree about the image size."""

    status = "size_mismatch"


class CameraInfoError(PerceptionError):
    """Camera intrinsics are unusable (zero/NaN focal length, bad K, zero size)."""

    status = "bad_camera_info"


class UnsupportedDistortionError(CameraInfoError):
    """A distortion model other than none / ``plumb_bob`` with non-zero coefficients."""

    status = "unsupported_distortion"


class EmptyDepthError(PerceptionError):
    """No valid depth pixel (all 0, NaN or outside the configured range)."""

    status = "empty_depth"


class NothingInWorkspaceError(PerceptionError):
    """Valid depth exists but no point lies in the workspace box (or no object above the table)."""

    status = "nothing_in_workspace"


class NoTableError(PerceptionError):
    """No roughly horizontal plane with enough support was found in the workspace."""

    status = "no_table"


class NoObjectError(NothingInWorkspaceError):
    """A table was found but nothing above it forms a cluster large enough to be an object
    (same status as :class:`NothingInWorkspaceError`: the workspace holds no object)."""


class BadPromptError(PerceptionError):
    """A target prompt that does not parse, or that selects nothing (index out of range, pixel
    outside the image, no object near the point)."""

    status = "bad_prompt"


class CalibrationError(PerceptionError):
    """A calibration (extrinsics) YAML is missing or malformed.

    Attributes:
        path: The YAML file.
        field: Dotted path of the offending field ("" for the whole file).
    """

    status = "bad_calibration"

    def __init__(self, path: str | Path, field: str, message: str):
        self.path = Path(path)
        self.field = field
        where = f": field '{field}'" if field else ""
        super().__init__(f"{self.path}{where}: {message}")


class TransformError(PerceptionError):
    """The camera pose could not be looked up (TF) for a frame."""

    status = "no_transform"


class ConfigError(PerceptionError):
    """A perception configuration value is invalid.

    Attributes:
        field: Dotted field name, e.g. ``workspace.min``.
    """

    status = "bad_config"

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"perception config field '{field}': {message}")


class SamError(PerceptionError):
    """Segment Anything cannot be used (package missing, no colour image, bad prompt box)."""

    status = "sam_error"


class SamCheckpointError(SamError):
    """The configured Segment Anything checkpoint file is missing or does not fit the model type.

    Attributes:
        path: The checkpoint path that was configured.
    """

    status = "sam_checkpoint_missing"

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")
