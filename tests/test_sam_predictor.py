"""Promptable predictor with the real LiteMedSAM weights, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from sac.core.errors import InputError
from sac.sam.backbones import build_sam, get_spec, tiny_spec
from sac.sam.predictor import SamPredictor

from synthetic import DEFAULT_DISKS, disk_boxes, disk_image


def _ious(masks: np.ndarray, labels: np.ndarray) -> list[float]:
    out = []
    for i in range(len(masks)):
        gt = labels == i + 1
        out.append(float((masks[i, 0] & gt).sum() / (masks[i, 0] | gt).sum()))
    return out


@pytest.mark.weights
def test_box_prompts_segment_disks_with_real_weights(lite_medsam) -> None:
    image, labels = disk_image((256, 256), DEFAULT_DISKS)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image)
    pred = predictor.predict(boxes=disk_boxes(DEFAULT_DISKS), batch_size=2)
    assert pred.masks.shape == (5, 1, 256, 256)
    ious = _ious(pred.masks, labels)
    assert min(ious) >= 0.9, ious


@pytest.mark.weights
def test_non_square_image_masks_come_back_at_original_size(lite_medsam) -> None:
    disks = [(40, 60, 14), (100, 300, 18), (80, 180, 12)]
    image, labels = disk_image((150, 400), disks)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image[..., 0])  # gray input
    pred = predictor.predict(boxes=disk_boxes(disks))
    assert pred.masks.shape == (3, 1, 150, 400)
    assert min(_ious(pred.masks, labels)) >= 0.85


@pytest.mark.weights
def test_random_weights_do_not_segment(lite_medsam) -> None:
    """The same architecture with random weights fails, so the test above measures the weights."""
    image, labels = disk_image((256, 256), DEFAULT_DISKS)
    predictor = SamPredictor(build_sam(get_spec("lite_medsam")).eval(), get_spec("lite_medsam"))
    predictor.set_image(image)
    pred = predictor.predict(boxes=disk_boxes(DEFAULT_DISKS))
    assert max(_ious(pred.masks, labels)) < 0.3


@pytest.mark.weights
def test_point_prompts_run_with_shapes(lite_medsam) -> None:
    """LiteMedSAM was distilled with boxes only: points run, their accuracy is not claimed."""
    image, _ = disk_image((256, 256), DEFAULT_DISKS)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image)
    pts = np.array([[[cx, cy], [5, 5]] for cy, cx, _ in DEFAULT_DISKS], dtype=np.float32)
    lbl = np.array([[1, 0]] * len(DEFAULT_DISKS))
    pred = predictor.predict(points=pts, labels=lbl, multimask=True)
    assert pred.masks.shape == (5, 3, 256, 256) and pred.masks.dtype == bool
    assert pred.iou.shape == (5, 3) and pred.low_res_logits.shape == (5, 3, 256, 256)
    both = predictor.predict(points=pts[:, :1], labels=lbl[:, :1], boxes=disk_boxes(DEFAULT_DISKS))
    assert both.masks.shape == (5, 1, 256, 256)
    single = predictor.predict(points=pts[0], labels=lbl[0])
    assert single.masks.shape == (1, 1, 256, 256)


@pytest.mark.weights
def test_bf16_close_to_fp32(lite_medsam) -> None:
    image, labels = disk_image((256, 256), DEFAULT_DISKS)
    spec = get_spec("lite_medsam")
    predictor = SamPredictor(lite_medsam, spec, bf16=True)
    predictor.set_image(image)
    pred = predictor.predict(boxes=disk_boxes(DEFAULT_DISKS))
    assert min(_ious(pred.masks, labels)) >= 0.85


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.uint8), "unsupported image shape"),
        (np.zeros((8, 8, 5), np.uint8), "unsupported image shape"),  # (H, W, 2) is gray+alpha
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.zeros((8, 8), bool), "unsupported pixel type"),
        (np.zeros((8, 8), np.complex64), "unsupported pixel type"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_images_rejected(array: np.ndarray, message: str) -> None:
    spec = tiny_spec("lite_medsam")
    predictor = SamPredictor(build_sam(spec), spec)
    with pytest.raises(InputError, match=message):
        predictor.set_image(array, source="bad.tif")


def test_bad_prompts_rejected() -> None:
    spec = tiny_spec("lite_medsam")
    predictor = SamPredictor(build_sam(spec), spec)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(boxes=np.array([0, 0, 5, 5]))
    predictor.set_image(np.zeros((32, 32), np.uint16))
    with pytest.raises(InputError, match="point prompts, box prompts"):
        predictor.predict()
    with pytest.raises(InputError, match="labels"):
        predictor.predict(points=np.zeros((1, 2)))
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        predictor.predict(boxes=np.zeros((2, 3)))
    with pytest.raises(InputError, match="1 \\(positive\\) or 0"):
        predictor.predict(points=np.zeros((1, 2)), labels=np.array([5]))


@pytest.mark.weights
def test_windowed_decoding_keeps_accuracy(lite_medsam) -> None:
    """Decoding on a 32x32-token window around each box matches full-grid decoding on disks."""
    import torch

    from sac.modeling.sam import window_origins
    from sac.sam.transforms import prepare_batch

    image, labels = disk_image((256, 256), DEFAULT_DISKS)
    batch, _ = prepare_batch([image.astype(np.float32) / 255], 256, "minmax")
    boxes = torch.from_numpy(disk_boxes(DEFAULT_DISKS))
    with torch.no_grad():
        emb = lite_medsam.encode(batch)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        origins = window_origins(centres, 32, 64, 4.0)
        logits, _ = lite_medsam.decode_windows(emb, origins, 32, boxes=boxes)
    assert logits.shape == (5, 1, 128, 128)
    for i, (r, c) in enumerate(origins.tolist()):
        full = np.zeros((256, 256), bool)
        full[4 * r : 4 * r + 128, 4 * c : 4 * c + 128] = logits[i, 0].numpy() > 0
        gt = labels == i + 1
        assert (full & gt).sum() / (full | gt).sum() >= 0.9


@pytest.mark.weights
@pytest.mark.parametrize("shape", [(256, 256), (200, 460)])
def test_predict_instances_crops_match_ground_truth(lite_medsam, shape) -> None:
    """Window-decoded crops land at the right place, also when the image is resized."""
    disks = [(60, 70, 18), (150, 190, 22), (100, 400, 15)] if shape[1] > 256 else DEFAULT_DISKS
    image, labels = disk_image(shape, disks)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image)
    crops = predictor.predict_instances(boxes=disk_boxes(disks), window=24)
    assert len(crops) == len(disks)
    for i, inst in enumerate(crops):
        assert inst is not None
        full = np.zeros(shape, bool)
        h, w = inst.mask.shape
        full[inst.y0 : inst.y0 + h, inst.x0 : inst.x0 + w] = inst.mask
        gt = labels == i + 1
        assert (full & gt).sum() / (full | gt).sum() >= 0.85, i


@pytest.mark.weights
def test_big_input_embedded_once_segments_like_model_sized_tiles(lite_medsam) -> None:
    """A 480-px image embedded in one 480-px pass: each box-prompted disk comes out at least
    as well as in a model-sized tile around it (windows decoded in a virtual model-sized
    tile), and whole-grid decoding is refused."""
    disks = [(40, 40, 12), (60, 420, 16), (240, 240, 14), (430, 100, 11), (300, 380, 18),
             (150, 300, 9)]
    image, labels = disk_image((480, 480), disks)
    boxes = disk_boxes(disks)

    def iou(inst: object, i: int, y0: int = 0, x0: int = 0) -> float:
        assert inst is not None
        full = np.zeros((480, 480), bool)
        h, w = inst.mask.shape  # type: ignore[attr-defined]
        full[y0 + inst.y0 : y0 + inst.y0 + h, x0 + inst.x0 : x0 + inst.x0 + w] = \
            inst.mask  # type: ignore[attr-defined]
        gt = labels == i + 1
        return float((full & gt).sum() / (full | gt).sum())

    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image, upscale=False, input_size=480)
    assert predictor.embedding is not None and predictor.embedding.shape[-1] == 120
    big = [iou(m, i) for i, m in enumerate(predictor.predict_instances(boxes=boxes, window=16))]
    with pytest.raises(RuntimeError, match="predict_instances"):
        predictor.predict(boxes=boxes[:1])
    with pytest.raises(ValueError, match="multiple of 16"):
        predictor.set_image(image, input_size=250)
    tiles = []
    for i, (y, x, _) in enumerate(disks):
        y0, x0 = min(max(0, y - 128), 224), min(max(0, x - 128), 224)
        predictor.set_image(image[y0 : y0 + 256, x0 : x0 + 256], upscale=False)
        tile = predictor.predict_instances(boxes=boxes[i : i + 1] - [x0, y0, x0, y0], window=16)
        tiles.append(iou(tile[0], i, y0, x0))
    assert min(big) >= 0.9 and np.mean(big) >= np.mean(tiles) - 0.02, (big, tiles)


@pytest.mark.weights
def test_predict_instances_offset_and_upsample(lite_medsam) -> None:
    """Crops shifted by a tile offset and decoded on a 2x finer grid land where they belong."""
    image, labels = disk_image((256, 256), DEFAULT_DISKS)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image)
    boxes = disk_boxes(DEFAULT_DISKS)
    plain = predictor.predict_instances(boxes=boxes, window=24)
    fine = predictor.predict_instances(boxes=boxes, window=24, offset=(10.0, 20.0),
                                       upsample=(2.0, 2.0))
    big = np.zeros((552, 532), np.uint32)  # the disks' frame shifted by (20, 10), then 2x
    big[40:, 20:] = np.repeat(np.repeat(labels, 2, 0), 2, 1)[:512, :512]
    for i, (p, f) in enumerate(zip(plain, fine, strict=True)):
        assert p is not None and f is not None
        assert abs(f.area / p.area - 4) < 0.4
        full = np.zeros(big.shape, bool)
        h, w = f.mask.shape
        full[f.y0 : f.y0 + h, f.x0 : f.x0 + w] = f.mask
        gt = big == i + 1
        assert (full & gt).sum() / (full | gt).sum() >= 0.85, i
    with pytest.raises(InputError, match="upsample"):
        predictor.predict_instances(boxes=boxes, upsample=(0.0, 1.0))


@pytest.mark.weights
def test_predict_instances_threshold_grows_and_shrinks_masks(lite_medsam) -> None:
    """A lower mask logit threshold gives each mask a superset of its pixels, a higher one a
    subset; 0 is SAM's own cut."""
    image, _ = disk_image((256, 256), DEFAULT_DISKS)
    predictor = SamPredictor(lite_medsam, get_spec("lite_medsam"))
    predictor.set_image(image)
    boxes = disk_boxes(DEFAULT_DISKS)

    def full_masks(threshold: float | None) -> list[np.ndarray]:
        kwargs = {} if threshold is None else {"threshold": threshold}
        out = []
        for inst in predictor.predict_instances(boxes=boxes, window=24, **kwargs):
            assert inst is not None
            m = np.zeros((256, 256), bool)
            h, w = inst.mask.shape
            m[inst.y0 : inst.y0 + h, inst.x0 : inst.x0 + w] = inst.mask
            out.append(m)
        return out

    default, low, zero, high = (full_masks(t) for t in (None, -4.0, 0.0, 4.0))
    for d, lo, z, hi in zip(default, low, zero, high, strict=True):
        assert (d == z).all()
        assert (lo >= z).all() and (z >= hi).all()  # nested
        assert lo.sum() > z.sum() > hi.sum()
