"""Tiled decoding shared by SAC and the zero-shot baseline: each prompt set is decoded once,
in the tile that holds it best, with the tile's offset applied."""

from __future__ import annotations

import numpy as np

from sac.core.labels import InstanceMask
from sac.core.tiles import assign_boxes, make_tiles
from sac.pipeline.decode import decode_sets, encoded_tiles
from sac.pipeline.prompts import PromptSet


class FakePredictor:
    """Records what is embedded and returns one mask per prompt set at its box."""

    def __init__(self) -> None:
        self.images: list[tuple[int, int]] = []

    def set_image(self, image: np.ndarray, normalized: bool, upscale: bool) -> None:
        assert normalized and not upscale
        self.images.append(image.shape[:2])

    def predict_instances(self, points, labels, boxes, window, batch_size, extents, offset,
                          upsample, threshold):
        out = []
        for b in boxes:
            x0, y0 = int(b[0] + offset[0]), int(b[1] + offset[1])
            out.append(InstanceMask(y0, x0, np.ones((2, 2), bool), 1.0))
        return out


def test_every_set_decoded_once_in_its_tile() -> None:
    rgb = np.zeros((300, 500, 3), np.float32)
    boxes = np.array([[10, 10, 20, 20], [250, 100, 262, 112], [480, 280, 495, 295]],
                     np.float32)
    sets = [PromptSet(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), b) for b in boxes]
    pred = FakePredictor()
    tiles = list(encoded_tiles(pred, rgb, boxes, 256, 64))
    assert len(pred.images) == len(tiles) <= len(make_tiles((300, 500), 256, 64))
    owner = assign_boxes(boxes, make_tiles((300, 500), 256, 64), (300, 500))
    decoded = []
    for t in tiles:
        masks = decode_sets(pred, [sets[i] for i in t.chosen], None, t.offset, 32, 8)
        decoded += [(m.x0, m.y0) for m in masks]
        assert all(owner[i] == owner[t.chosen[0]] for i in t.chosen)
    assert sorted(decoded) == sorted((int(b[0]), int(b[1])) for b in boxes)  # image frame
    every = FakePredictor()
    assert len(list(encoded_tiles(every, rgb, boxes[:1], 256, 64, every_tile=True))) == \
        len(make_tiles((300, 500), 256, 64))
