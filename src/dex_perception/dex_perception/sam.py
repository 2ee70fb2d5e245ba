"""Segment Anything (SAM) backend: a box or point prompt on the colour image -> a pixel mask.

Uses Meta's ``segment-anything`` package (``pip install segment-anything==1.0``, Apache-2.0) and
torch, both imported lazily (only when a segmenter is built). Weights are never downloaded: the
checkpoint is a file path in the config (``sam_checkpoint``); a missing file raises
:class:`SamCheckpointError` naming the path and where the official checkpoints are published.

torchvision: ``segment_anything/__init__.py`` imports ``SamPredictor`` and the automatic mask
generator, which import torchvision (image resizing, NMS). PyPI's torchvision is built against
PyPI's CUDA torch and does not load next to the CPU torch build this project installs, so this
module never executes that ``__init__``: it registers the package as a bare parent module (its
``__path__`` only) and imports the torch-only submodules ``segment_anything.modeling`` and
``segment_anything.build_sam`` (the model registry). The few lines of ``SamPredictor`` we need
(resize the longest side to the encoder size with PIL bilinear -- exactly what its torchvision
``resize`` does on a PIL image --, scale prompt coordinates, embed once, decode per prompt) are
re-implemented in :class:`SamSegmenter`. If the full package was already imported elsewhere
(torchvision present), that import is used as is.

:func:`tiny_sam` builds a randomly initialised SAM with tiny dimensions from the package's own
building blocks (``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``,
``Sam``) so the prompt -> mask wiring is testable without weights. Its masks are meaningless;
nothing here claims segmentation quality.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from dex_perception.errors import SamCheckpointError, SamError

CHECKPOINT_HINT = ("official checkpoints (sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth) "
                   "are published by the segment-anything project; download one on a machine with access and "
                   "set the perception parameter 'sam_checkpoint' to its path")


def import_segment_anything() -> tuple[types.ModuleType, types.ModuleType]:
    """``(segment_anything.modeling, segment_anything.build_sam)`` without torchvision (see module doc).

    Raises:
        SamError: The package (or torch) is not installed.
    """
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or not spec.submodule_search_locations:
            raise SamError("the 'segment-anything' package is not installed (pip install segment-anything==1.0)")
        parent = types.ModuleType("segment_anything")
        parent.__path__ = list(spec.submodule_search_locations)
        parent.__file__ = spec.origin
        parent.__spec__ = spec
        parent.__package__ = "segment_anything"
        sys.modules["segment_anything"] = parent
    try:
        modeling = importlib.import_module("segment_anything.modeling")
        build_sam = importlib.import_module("segment_anything.build_sam")
    except ImportError as exc:
        raise SamError(f"cannot import segment_anything's model code: {exc}") from None
    return modeling, build_sam


def tiny_sam(seed: int = 0, image_size: int = 64):
    """A randomly initialised SAM with tiny dimensions (for wiring tests only; masks are noise).

    Encoder: 1 ViT block, width 32, patch 16 on ``image_size`` px; prompt/mask dims 32.
    """
    import torch

    modeling, _ = import_segment_anything()
    torch.manual_seed(seed)
    dim, patch = 32, 16
    emb = image_size // patch
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(img_size=image_size, patch_size=patch, in_chans=3, embed_dim=32,
                                               depth=1, num_heads=2, mlp_ratio=2.0, out_chans=dim,
                                               qkv_bias=True, use_rel_pos=False, window_size=0,
                                               global_attn_indexes=()),
        prompt_encoder=modeling.PromptEncoder(embed_dim=dim, image_embedding_size=(emb, emb),
                                              input_image_size=(image_size, image_size), mask_in_chans=4),
        mask_decoder=modeling.MaskDecoder(num_multimask_outputs=3,
                                          transformer=modeling.TwoWayTransformer(depth=1, embedding_dim=dim,
                                                                                 mlp_dim=32, num_heads=2),
                                          transformer_dim=dim, iou_head_depth=1, iou_head_hidden_dim=16),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam(checkpoint: str | Path, model_type: str = "vit_b", device: str = "cpu"):
    """Build ``model_type`` from segment-anything's registry and load ``checkpoint``.

    Raises:
        SamCheckpointError: The file is missing/unreadable or does not fit ``model_type``.
        SamError: segment-anything/torch missing, or an unknown model type.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise SamCheckpointError(path, f"Segment Anything checkpoint not found ({model_type}); {CHECKPOINT_HINT}")
    import torch

    _, build_sam = import_segment_anything()
    registry = build_sam.sam_model_registry
    if model_type not in registry:
        raise SamError(f"unknown SAM model type {model_type!r}; known: {sorted(registry)}")
    try:
        state = torch.load(str(path), map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/IO failure is a bad checkpoint
        raise SamCheckpointError(path, f"cannot read the checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise SamCheckpointError(path, f"checkpoint is a {type(state).__name__}, not a state dict")
    sam = registry[model_type](checkpoint=None)
    try:
        sam.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise SamCheckpointError(path, f"checkpoint does not fit SAM model type {model_type!r}: "
                                 f"{str(exc).splitlines()[0]}") from None
    return sam.to(device).eval()


class SamSegmenter:
    """Prompted SAM masks on colour images; the model is built on first use.

    Args:
        checkpoint: Checkpoint path (ignored when ``model`` is given).
        model_type: Registry name (``vit_b``, ``vit_l``, ``vit_h``).
        device: torch device.
        model: A ready ``segment_anything.modeling.Sam`` (e.g. :func:`tiny_sam`).
    """

    def __init__(self, checkpoint: str | Path = "", model_type: str = "vit_b", device: str = "cpu",
                 model: Any = None):
        self.checkpoint = str(checkpoint)
        self.model_type = model_type
        self.device = device
        self._model = model
        self._cache_key: tuple | None = None
        self._features = None
        self._input_size: tuple[int, int] = (0, 0)
        self._original_size: tuple[int, int] = (0, 0)

    @property
    def model(self):
        if self._model is None:
            self._model = load_sam(self.checkpoint, self.model_type, self.device)
        return self._model

    def _resized_shape(self, h: int, w: int) -> tuple[int, int]:
        target = self.model.image_encoder.img_size
        scale = target / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def set_image(self, rgb: np.ndarray) -> None:
        """Embed ``rgb`` ((H, W, 3) uint8); cached while the same array content is passed again."""
        import torch
        from PIL import Image

        rgb = np.ascontiguousarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise SamError(f"SAM needs an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        key = (rgb.shape, hash(rgb[::7, ::7].tobytes()), int(rgb.sum(dtype=np.int64)))
        if key == self._cache_key:
            return
        model = self.model
        h, w = rgb.shape[:2]
        nh, nw = self._resized_shape(h, w)
        resized = np.array(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        x = torch.as_tensor(resized, device=model.device).permute(2, 0, 1).contiguous()[None].float()
        with torch.no_grad():
            self._features = model.image_encoder(model.preprocess(x))
        self._input_size, self._original_size = (nh, nw), (h, w)
        self._cache_key = key

    def segment(self, rgb: np.ndarray, box: np.ndarray | None = None, point: np.ndarray | None = None) -> np.ndarray:
        """(H, W) bool mask for a box ``(x0, y0, x1, y1)`` [px] and/or a foreground point ``(u, v)`` [px].

        With a box, one mask is decoded (SAM's recommendation for unambiguous prompts); with a
        point alone, three are decoded and the one with the highest predicted IoU is returned.
        """
        import torch

        if box is None and point is None:
            raise SamError("SAM needs a box or a point prompt")
        self.set_image(rgb)
        model = self.model
        (h, w), (nh, nw) = self._original_size, self._input_size
        scale = np.array([nw / w, nh / h])
        boxes = points = None
        if box is not None:
            b = np.asarray(box, dtype=np.float64).reshape(2, 2)
            if not np.all(np.isfinite(b)):
                raise SamError(f"SAM box prompt must be finite, got {box}")
            boxes = torch.as_tensor((b * scale).reshape(1, 4), dtype=torch.float, device=model.device)
        if point is not None:
            pt = np.asarray(point, dtype=np.float64).reshape(1, 2)
            if not np.all(np.isfinite(pt)):
                raise SamError(f"SAM point prompt must be finite, got {point}")
            coords = torch.as_tensor((pt * scale)[None], dtype=torch.float, device=model.device)
            points = (coords, torch.ones((1, 1), dtype=torch.int, device=model.device))
        multimask = boxes is None
        with torch.no_grad():
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
            low_res, iou = model.mask_decoder(image_embeddings=self._features,
                                              image_pe=model.prompt_encoder.get_dense_pe(),
                                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                              multimask_output=multimask)
            masks = model.postprocess_masks(low_res, self._input_size, self._original_size)
        best = int(torch.argmax(iou[0])) if multimask else 0
        return (masks[0, best] > model.mask_threshold).cpu().numpy()
