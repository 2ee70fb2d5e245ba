"""Target prompts: the grammar of ``dex_interfaces/srv/SegmentObject``'s ``prompt`` field.

=================  ==========================================================================
prompt             selects
=================  ==========================================================================
``""``/``default`` the configured ``default_prompt``
``largest``        the cluster with the most depth pixels
``nearest``        the cluster whose centroid is nearest (x-y) to ``config.reference_point``
``index N``        the N-th cluster (0-based) in the order of :attr:`PerceptionResult.clusters`
                   (largest first)
``point X Y Z``    the cluster with the point closest to (X, Y, Z) [m] in the robot base frame
``pixel U V``      the cluster at colour-image pixel (U = column, V = row) [px]; without a
                   colour image, a depth-image pixel
=================  ==========================================================================

Keywords are case-insensitive; numbers may be separated by spaces or commas.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dex_perception.errors import BadPromptError

KINDS = ("default", "largest", "nearest", "index", "point", "pixel")
_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Prompt:
    """A parsed prompt.

    Attributes:
        kind: One of :data:`KINDS`.
        index: For ``index``.
        point: For ``point``: (x, y, z) [m], robot base frame.
        pixel: For ``pixel``: (u, v) [px] in the colour image (u = column, v = row).
        text: The prompt as given.
    """

    kind: str
    index: int | None = None
    point: tuple[float, float, float] | None = None
    pixel: tuple[float, float] | None = None
    text: str = ""


def _numbers(key: str, words: list[str], count: int, text: str) -> list[float]:
    if len(words) != count:
        raise BadPromptError(f"prompt {text!r}: '{key}' needs {count} numbers, got {len(words)}")
    try:
        values = [float(w) for w in words]
    except ValueError:
        raise BadPromptError(f"prompt {text!r}: not a number in {words}") from None
    if not all(math.isfinite(v) for v in values):
        raise BadPromptError(f"prompt {text!r}: numbers must be finite")
    return values


def parse_prompt(text: str) -> Prompt:
    """Parse ``text``; :class:`BadPromptError` says what is wrong and lists the grammar."""
    if not isinstance(text, str):
        raise BadPromptError(f"prompt must be a string, got {type(text).__name__}")
    words = [w for w in _SPLIT.split(text.strip()) if w]
    if not words:
        return Prompt("default", text=text)
    key, rest = words[0].lower(), words[1:]
    grammar = "'', 'default', 'largest', 'nearest', 'index N', 'point X Y Z', 'pixel U V'"
    if key in ("default", "largest", "nearest"):
        if rest:
            raise BadPromptError(f"prompt {text!r}: '{key}' takes no arguments; grammar: {grammar}")
        return Prompt(key, text=text)
    if key == "index":
        if len(rest) != 1 or not re.fullmatch(r"[+]?\d+", rest[0]):
            raise BadPromptError(f"prompt {text!r}: 'index' needs one integer >= 0; grammar: {grammar}")
        return Prompt("index", index=int(rest[0]), text=text)
    if key == "point":
        x, y, z = _numbers(key, rest, 3, text)
        return Prompt("point", point=(x, y, z), text=text)
    if key == "pixel":
        u, v = _numbers(key, rest, 2, text)
        return Prompt("pixel", pixel=(u, v), text=text)
    raise BadPromptError(f"prompt {text!r}: unknown keyword '{words[0]}'; grammar: {grammar}")
