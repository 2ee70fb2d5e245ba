"""Multi-frame depth fusion for a static scene: per-pixel mean of the valid depths of N frames.

Averaging N frames of independent sensor noise divides its standard deviation by ``sqrt(N)``;
pixels valid in fewer than ``min_valid_fraction * N`` frames (flicker at edges, specular spots)
are invalid in the fused frame. A frame of another size restarts the accumulation.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from dex_perception.camera import depth_to_metres


def fuse_depth(frames: list[np.ndarray] | tuple[np.ndarray, ...], min_valid_fraction: float = 0.5) -> np.ndarray:
    """(H, W) float32 [m] mean of the valid values of ``frames`` (each (H, W) [m], NaN/0 invalid).

    A pixel is NaN unless at least ``ceil(min_valid_fraction * len(frames))`` frames are valid there.
    """
    if not frames:
        raise ValueError("fuse_depth needs at least one frame")
    stack = np.stack([depth_to_metres(f) for f in frames])
    valid = np.isfinite(stack)
    count = valid.sum(axis=0)
    total = np.where(valid, stack, 0.0).sum(axis=0, dtype=np.float64)
    need = max(1, math.ceil(min_valid_fraction * len(frames) - 1e-9))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    out[count < need] = np.nan
    return out


class DepthFusion:
    """Rolling buffer of the last ``frames`` depth images.

    Args:
        frames: How many frames to average (1 = pass-through).
        min_valid_fraction: See :func:`fuse_depth`.
    """

    def __init__(self, frames: int = 1, min_valid_fraction: float = 0.5):
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames = int(frames)
        self.min_valid_fraction = float(min_valid_fraction)
        self._buffer: deque[np.ndarray] = deque(maxlen=self.frames)

    def add(self, depth: np.ndarray) -> None:
        """Append one (H, W) depth frame [m]; a size change clears the buffer first."""
        d = depth_to_metres(depth)
        if self._buffer and self._buffer[-1].shape != d.shape:
            self._buffer.clear()
        self._buffer.append(d)

    def reset(self) -> None:
        self._buffer.clear()

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def ready(self) -> bool:
        """True once ``frames`` frames are buffered."""
        return len(self._buffer) == self.frames

    def fused(self) -> np.ndarray:
        """The fused frame of what is buffered (fewer than ``frames`` frames is allowed)."""
        if not self._buffer:
            raise ValueError("no depth frame buffered")
        if len(self._buffer) == 1:
            return self._buffer[0].copy()
        return fuse_depth(tuple(self._buffer), self.min_valid_fraction)
