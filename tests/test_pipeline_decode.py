"""Tiled decoding shared by SAC and the zero-shot baseline: each prompt set is decoded once,
in the tile that holds it best, with the tile's offset applied."""

from __future__ import annotations

import numpy as np

from sac.core.labels import InstanceMask
from sac.core.tiles import assign_boxes, make_tiles
from sac.pipeline.decode import decode_sets, encoded_tiles, encoder_tile
from sac.pipeline.prompts import PromptSet


class FakePredictor:
    """Records what is embedded and returns one mask per prompt set at its box."""

    class spec:  # a BackboneSpec's size
        image_size = 256

    class encoder:  # a TorchEncoder's input step
        multiple = 16

    def __init__(self) -> None:
        self.images: list[tuple[int, int]] = []
        self.sizes: list[int | None] = []

    def set_image(self, image: np.ndarray, normalized: bool, upscale: bool,
                  input_size: int | None = None) -> None:
        assert normalized and not upscale
        self.images.append(image.shape[:2])
        self.sizes.append(input_size)

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


def test_big_tiles_cover_the_image_in_as_few_small_passes_as_possible() -> None:
    assert encoder_tile((200, 300), 1024, 64, 256) == 304  # one pass, padded to 16
    assert encoder_tile((100, 120), 1024, 64, 256) == 256  # never below the model's size
    assert encoder_tile((500, 500), 200, 50, 256) == 200  # model-sized tiles as asked
    assert encoder_tile((500, 500), 1024, 64, 256, 256) == 512  # the ONNX runtime's sizes
    assert encoder_tile((1000, 300), 1000, 64, 256, 256) == 768  # at most the tile asked for
    assert encoder_tile((1000, 1000), 1024, 64, 256) == 1008
    side = encoder_tile((1100, 900), 1024, 64, 256)  # two passes a side, not 2 x 1024
    assert side == 592 and len(make_tiles((1100, 900), side, 64)) == 4
    for length in range(257, 3000, 37):  # never more tiles than the largest size gives
        side = encoder_tile((length, 40), 1024, 64, 256)
        assert side % 16 == 0 and 256 <= side <= 1024
        assert len(make_tiles((length, 40), side, 64)) == len(make_tiles((length, 40), 1024, 64))
        assert (side - 64) * len(make_tiles((length, 40), side, 64)) + 64 >= length


def test_big_tile_embedded_in_one_pass() -> None:
    rgb = np.zeros((300, 500, 3), np.float32)
    boxes = np.array([[10, 10, 20, 20], [480, 280, 495, 295]], np.float32)
    pred = FakePredictor()
    tiles = list(encoded_tiles(pred, rgb, boxes, 1024, 64))
    assert len(tiles) == 1 and pred.images == [(300, 500)] and pred.sizes == [512]
    small = FakePredictor()
    list(encoded_tiles(small, rgb[:200, :200], boxes[:1], 1024, 64))
    assert small.sizes == [None]  # at the model's own size: the model-sized path
