"""A tiny stamp-matching cache for depth + camera info (+ colour) streams (ROS-free).

``message_filters`` is not available as a wheel, and the node only needs "the newest depth frame
whose camera info (and, optionally, colour image) carries a matching stamp", so this keeps the
last few messages of each stream and matches on demand. Stamps are integer nanoseconds.

Matching rules: camera info within ``info_slop_ns`` of the depth stamp (drivers stamp them
identically; the default tolerance is 1 ms); colour within ``color_slop_ns`` (separate sensor,
default 30 ms), nearest wins; a depth frame without a matching info is skipped (it may be
matched later when its info arrives).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    stamp_ns: int
    msg: T


@dataclass(frozen=True)
class MatchedFrame:
    """A depth message with its camera info and (if any matched) colour message."""

    stamp_ns: int
    depth: Any
    info: Any
    color: Any | None


def _nearest(queue: deque, stamp_ns: int, slop_ns: int):
    best, best_dt = None, None
    for item in queue:
        dt = abs(item.stamp_ns - stamp_ns)
        if dt <= slop_ns and (best_dt is None or dt < best_dt):
            best, best_dt = item, dt
    return best


class StampSync:
    """Keeps the last ``queue_size`` messages per stream and matches them by stamp.

    Args:
        queue_size: Messages kept per stream.
        info_slop_ns: Max |depth stamp - info stamp| [ns].
        color_slop_ns: Max |depth stamp - colour stamp| [ns].
    """

    def __init__(self, queue_size: int = 10, info_slop_ns: int = 1_000_000, color_slop_ns: int = 30_000_000):
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.info_slop_ns = int(info_slop_ns)
        self.color_slop_ns = int(color_slop_ns)
        self._depth: deque[Stamped] = deque(maxlen=queue_size)
        self._info: deque[Stamped] = deque(maxlen=queue_size)
        self._color: deque[Stamped] = deque(maxlen=queue_size)

    def add_depth(self, stamp_ns: int, msg: Any) -> None:
        self._depth.append(Stamped(int(stamp_ns), msg))

    def add_info(self, stamp_ns: int, msg: Any) -> None:
        self._info.append(Stamped(int(stamp_ns), msg))

    def add_color(self, stamp_ns: int, msg: Any) -> None:
        self._color.append(Stamped(int(stamp_ns), msg))

    def clear(self) -> None:
        self._depth.clear()
        self._info.clear()
        self._color.clear()

    @property
    def counts(self) -> tuple[int, int, int]:
        """(depth, info, colour) messages buffered."""
        return len(self._depth), len(self._info), len(self._color)

    def matched(self, limit: int = 1, prefer_color_ns: int = 0, require_color: bool = False) -> list[MatchedFrame]:
        """Up to ``limit`` matched frames, newest first (by depth stamp; ties: latest received).

        Args:
            limit: Most frames returned.
            prefer_color_ns: A frame with its colour image is preferred to newer frames without
                one if it is at most this much older than the newest matched frame (the colour
                of the newest depth frame may still be in flight). 0: no preference.
            require_color: Only frames with a matched colour image.
        """
        found: list[MatchedFrame] = []
        order = sorted(range(len(self._depth)), key=lambda i: (self._depth[i].stamp_ns, i), reverse=True)
        for item in (self._depth[i] for i in order):
            info = _nearest(self._info, item.stamp_ns, self.info_slop_ns)
            if info is None:
                continue
            color = _nearest(self._color, item.stamp_ns, self.color_slop_ns)
            if color is None and require_color:
                continue
            found.append(MatchedFrame(item.stamp_ns, item.msg, info.msg, color.msg if color else None))
        if prefer_color_ns > 0 and found and found[0].color is None:
            newest = found[0].stamp_ns
            recent = [f for f in found if f.color is not None and newest - f.stamp_ns <= prefer_color_ns]
            if recent:
                found = [f for f in found if f.stamp_ns <= recent[0].stamp_ns]
        return found[:limit]

    def latest(self, prefer_color_ns: int = 0, require_color: bool = False) -> MatchedFrame | None:
        """The newest matched frame (see :meth:`matched`), or None."""
        found = self.matched(1, prefer_color_ns, require_color)
        return found[0] if found else None
