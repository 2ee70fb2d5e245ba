"""Segment Anything backend: missing-weights error, torchvision-free import, prompt -> mask wiring
with a tiny randomly initialised SAM (masks are noise: nothing here measures segmentation quality),
and agreement of our predictor with segment-anything's own SamPredictor."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")

if importlib.util.find_spec("segment_anything") is None:
    pytest.skip("segment-anything is not installed (pip install segment-anything==1.0)", allow_module_level=True)

from dex_perception import synthetic as syn  # noqa: E402
from dex_perception.config import default_config  # noqa: E402
from dex_perception.errors import SamCheckpointError, SamError  # noqa: E402
from dex_perception.pipeline import Perception  # noqa: E402
from dex_perception.sam import SamSegmenter, load_sam, tiny_sam  # noqa: E402


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "weights" / "sam_vit_b_01ec64.pth"
    with pytest.raises(SamCheckpointError) as info:
        load_sam(path, "vit_b")
    assert info.value.path == path and str(path) in str(info.value) and info.value.status == "sam_checkpoint_missing"
    # the pipeline raises it lazily, when the first object is selected
    frame = syn.render(syn.SyntheticScene((syn.Primitive("sphere", (0.0, 0.55, 0.04), (0.04, 0, 0)),)),
                       syn.pinhole(320, 240), syn.DefaultView().base_T_camera())
    per = Perception(replace(default_config(), sam_checkpoint=str(path)), frame.base_T_camera)
    analysis = per.analyse(frame.depth, frame.camera, frame.rgb)
    with pytest.raises(SamCheckpointError):
        per.select(analysis, "largest")


def test_corrupt_checkpoint_is_a_typed_error(tmp_path):
    path = tmp_path / "sam.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SamCheckpointError, match="cannot read"):
        load_sam(path)
    with pytest.raises(SamError, match="unknown SAM model type"):
        load_sam(path, "vit_xxl")


def test_import_does_not_need_torchvision():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torchvision" or name.startswith("torchvision."):
                    raise ImportError("torchvision blocked by the test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from dex_perception.sam import SamSegmenter, tiny_sam
        mask = SamSegmenter(model=tiny_sam()).segment(np.zeros((30, 40, 3), np.uint8), box=[5, 5, 20, 20])
        assert mask.shape == (30, 40) and mask.dtype == bool
        assert "torchvision" not in sys.modules
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_prompt_mask_wiring_with_a_tiny_random_sam():
    seg = SamSegmenter(model=tiny_sam(seed=0, image_size=64))
    rgb = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    m_box = seg.segment(rgb, box=np.array([10, 8, 40, 30]))
    m_pt = seg.segment(rgb, point=np.array([20.0, 15.0]))
    m_both = seg.segment(rgb, box=np.array([10, 8, 40, 30]), point=np.array([20.0, 15.0]))
    for m in (m_box, m_pt, m_both):
        assert m.shape == (48, 80) and m.dtype == bool
    # the prompt reaches the decoder: different prompts give different masks (random weights are
    # still a deterministic function of the prompt)
    assert not np.array_equal(m_box, seg.segment(rgb, box=np.array([50, 5, 75, 40])))
    with pytest.raises(SamError):
        seg.segment(rgb)
    with pytest.raises(SamError):
        seg.segment(rgb[:, :, 0], box=[0, 0, 5, 5])


class _FakeSegmenter:
    """Returns a chosen mask and records the prompts (tests the pipeline's use of the mask)."""

    def __init__(self, mask):
        self.mask = mask
        self.calls = []

    def segment(self, rgb, box=None, point=None):
        self.calls.append((rgb.shape, None if box is None else np.asarray(box), point))
        return self.mask


def test_pipeline_uses_the_mask_to_select_depth_points():
    view = syn.DefaultView(width=320, height=240)
    scene = syn.SyntheticScene((syn.Primitive("box", (0.10, 0.5, 0.05), (0.05, 0.05, 0.05)),
                                syn.Primitive("box", (0.16, 0.5, 0.07), (0.01, 0.05, 0.07))))  # touching: one cluster
    frame = syn.render(scene, view.camera(), view.base_T_camera())
    rgb2 = np.repeat(np.repeat(frame.rgb, 2, axis=0), 2, axis=1)  # colour at twice the depth resolution
    per_plain = Perception(default_config(), frame.base_T_camera)
    plain = per_plain.process(frame.depth, frame.camera, rgb2, "largest")
    assert plain.num_objects == 1  # depth clustering cannot split touching boxes
    # a "SAM" mask that covers only the first box (in colour pixels)
    mask_rgb = np.repeat(np.repeat(frame.ids == 2, 2, axis=0), 2, axis=1)
    fake = _FakeSegmenter(mask_rgb)
    per = Perception(default_config(), frame.base_T_camera, segmenter=fake)
    res = per.process(frame.depth, frame.camera, rgb2, "largest")
    assert res.segmentation == "sam"
    assert np.all(frame.ids[res.mask] == 2) and res.mask.sum() < plain.mask.sum()
    (shape, box, point), = fake.calls
    assert shape == rgb2.shape and point is None
    u0, v0, u1, v1 = plain.cluster.pixel_box
    np.testing.assert_allclose(box, [2 * u0, 2 * v0, 2 * (u1 + 1), 2 * (v1 + 1)])
    # pixel prompts are passed on as SAM point prompts (colour pixels)
    v, u = np.argwhere(frame.ids == 2).mean(axis=0)
    per.select(per.analyse(frame.depth, frame.camera, rgb2), f"pixel {2 * u} {2 * v}")
    assert np.allclose(fake.calls[-1][2], [2 * u, 2 * v])
    # an empty mask falls back to the cluster, with a note
    fake.mask = np.zeros_like(mask_rgb)
    res = per.process(frame.depth, frame.camera, rgb2, "largest")
    assert res.segmentation == "cluster" and res.notes and np.array_equal(res.mask, plain.mask)
    # SAM without a colour image is an error
    with pytest.raises(SamError):
        per.process(frame.depth, frame.camera, None, "largest")


def test_matches_segment_anythings_own_predictor():
    """Our torchvision-free predictor equals SamPredictor on the same (tiny) model. torchvision is
    stubbed in a subprocess with exactly what SamPredictor uses (PIL resize of a PIL image)."""
    code = textwrap.dedent("""
        import sys, types
        import numpy as np
        from PIL import Image
        tv = types.ModuleType("torchvision"); tf = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        ops = types.ModuleType("torchvision.ops"); boxes = types.ModuleType("torchvision.ops.boxes")
        fn.to_pil_image = lambda a: Image.fromarray(a)
        fn.resize = lambda img, size: img.resize((size[1], size[0]), Image.BILINEAR)
        boxes.batched_nms = boxes.box_area = None
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tf, "torchvision.transforms.functional": fn,
                            "torchvision.ops": ops, "torchvision.ops.boxes": boxes})
        from segment_anything import SamPredictor
        from dex_perception.sam import SamSegmenter, tiny_sam
        model = tiny_sam(seed=3, image_size=64)
        rgb = np.random.default_rng(1).integers(0, 255, (45, 70, 3), dtype=np.uint8)
        pred = SamPredictor(model); pred.set_image(rgb)
        ours = SamSegmenter(model=model)
        box = np.array([8, 6, 40, 33]); pt = np.array([[20.0, 18.0]])
        ref_box = pred.predict(box=box, multimask_output=False)[0][0]
        masks, iou, _ = pred.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True)
        ref_pt = masks[int(np.argmax(iou))]
        assert np.array_equal(ours.segment(rgb, box=box), ref_box)
        assert np.array_equal(ours.segment(rgb, point=pt[0]), ref_pt)
        print("OK", int(ref_box.sum()), int(ref_pt.sum()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_checkpoint_loading_through_the_registry(tmp_path, monkeypatch):
    """The load path (registry builder -> torch.load(weights_only) -> load_state_dict) with a tiny
    model registered for the test; a checkpoint of another model type is a typed error."""
    import torch

    from dex_perception.sam import import_segment_anything

    _, build_sam = import_segment_anything()
    reference = tiny_sam(seed=11)
    path = tmp_path / "tiny.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setitem(build_sam.sam_model_registry, "tiny_test", lambda checkpoint=None: tiny_sam(seed=99))
    loaded = load_sam(path, "tiny_test")
    for (name, a), (_, b) in zip(reference.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    rgb = np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    box = np.array([5, 5, 30, 30])
    assert np.array_equal(SamSegmenter(model=loaded).segment(rgb, box=box),
                          SamSegmenter(model=reference).segment(rgb, box=box))
    with pytest.raises(SamCheckpointError, match="does not fit SAM model type 'vit_b'"):
        load_sam(path, "vit_b")  # builds the real ViT-B (93.7 M parameters, ~2 s) and rejects the tiny weights
