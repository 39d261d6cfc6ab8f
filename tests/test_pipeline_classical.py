"""The classical baseline: image-type decision, nucleus channel and instance count."""

from __future__ import annotations

import numpy as np
import pytest

from sac.pipeline.classical import (
    boxes_from_labels,
    classical_instances,
    dark_background,
    nucleus_channel,
)

from synthetic import DEFAULT_DISKS, disk_image, disk_labels, matched_ious

# Typical RGB of H&E: eosin-pink stroma and hematoxylin-purple nuclei.
PINK = np.array([0.93, 0.62, 0.78])
PURPLE = np.array([0.35, 0.22, 0.55])


def stained(labels: np.ndarray, background: np.ndarray, seed: int = 0) -> np.ndarray:
    """A float H&E-like image: ``background`` colour with purple nuclei where labels > 0."""
    rng = np.random.default_rng(seed)
    img = np.where(labels[..., None] > 0, PURPLE, background)
    return np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)


def fluorescence() -> tuple[np.ndarray, np.ndarray]:
    img, labels = disk_image()
    return img.astype(np.float64) / 255.0 * 0.5, labels  # dark field, median ~0.13


def test_image_type_decision() -> None:
    labels = disk_labels((128, 128), [(64, 64, 20)])
    assert dark_background(fluorescence()[0])
    assert not dark_background(stained(labels, PINK))
    # Dense tissue: the darker field (median gray ~0.4) is still coloured, so brightfield.
    assert not dark_background(stained(labels, PINK * 0.55))
    gray = np.full((64, 64, 3), 0.4)
    assert dark_background(gray)  # a gray mid-level field counts as fluorescence
    assert not dark_background(np.full((64, 64, 3), 0.9))


@pytest.mark.parametrize("kind", ["fluorescence", "he", "dense_he"])
def test_counts_disks(kind: str) -> None:
    if kind == "fluorescence":
        rgb, labels = fluorescence()
    else:
        labels = disk_labels((256, 256), DEFAULT_DISKS)
        rgb = stained(labels, PINK if kind == "he" else PINK * 0.55)
    out = classical_instances(rgb, min_distance=6)
    assert len(np.unique(out[out > 0])) == len(DEFAULT_DISKS)
    assert min(matched_ious(labels, out)) > 0.85


def test_nucleus_channel_is_bright_on_nuclei() -> None:
    labels = disk_labels((128, 128), [(64, 64, 20)])
    channel, kind = nucleus_channel(stained(labels, PINK))
    assert kind == "brightfield"
    assert channel[labels > 0].mean() > channel[labels == 0].mean() + 0.3
    forced, kind = nucleus_channel(stained(labels, PINK), modality="fluorescence")
    assert kind == "fluorescence" and forced[labels > 0].mean() < forced[labels == 0].mean()
    with pytest.raises(ValueError, match="modality"):
        nucleus_channel(stained(labels, PINK), modality="he")


def test_blank_image_gives_no_nuclei_and_boxes_contain_labels() -> None:
    assert classical_instances(np.full((64, 64, 3), 0.8)).max() == 0
    disks = [(30, 30, 8), (70, 60, 10)]
    boxes = boxes_from_labels(disk_labels((100, 100), disks))
    assert boxes.shape == (2, 4)
    for (cy, cx, r), (x0, y0, x1, y1) in zip(disks, boxes, strict=True):
        assert x0 < cx - r and y0 < cy - r and x1 > cx + r and y1 > cy + r
