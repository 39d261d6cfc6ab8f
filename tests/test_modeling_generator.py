"""The prompt generator U-Net and its training targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.segmentation import find_boundaries

from sac.modeling.generator import (
    GeneratorConfig,
    PromptGenerator,
    count_parameters,
    map_probabilities,
    pad_to_stride,
    split_outputs,
)
from sac.pipeline.nuclei import detect_nuclei
from sac.training.losses import generator_loss, hv_loss
from sac.training.targets import generator_targets

from synthetic import disk_labels as disks


@pytest.mark.parametrize(("h", "w"), [(64, 64), (96, 128), (256, 256)])
def test_output_shape(h: int, w: int) -> None:
    model = PromptGenerator().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, h, w)
    probs = split_outputs(out)
    assert set(probs) == {"fg", "boundary", "centre"}
    for p in probs.values():
        assert p.shape == (2, h, w) and float(p.min()) >= 0 and float(p.max()) <= 1


def test_size_must_be_multiple_of_stride() -> None:
    model = PromptGenerator()
    assert model.config.stride == 8
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 60, 64))
    x, size = pad_to_stride(torch.rand(1, 3, 60, 61), 8)
    assert x.shape[-2:] == (64, 64) and size == (60, 61)
    assert count_parameters(model) < 1_000_000


@pytest.mark.usefixtures("one_thread")
def test_gradients_flow() -> None:
    model = PromptGenerator(GeneratorConfig(widths=(8, 16, 32)))
    out = model(torch.rand(2, 3, 32, 32))
    F.binary_cross_entropy_with_logits(out, torch.rand_like(out)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, and a busy CPU stalls multi-threaded runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_thread")
def test_tiny_generator_overfits_a_disk_image() -> None:
    labels = disks((64, 64), [(22, 24, 10), (40, 44, 9)])
    target = torch.from_numpy(generator_targets(labels))[None]
    img = torch.full((1, 3, 64, 64), 0.2)
    img[:, :, torch.from_numpy(labels > 0)] = 0.8
    img += 0.03 * torch.randn_like(img)
    model = PromptGenerator(GeneratorConfig(widths=(8, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = F.binary_cross_entropy_with_logits(model(img), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_generator_reading_a_sam_embedding() -> None:
    cfg = GeneratorConfig(widths=(8, 16, 32), embed_chans=6, embed_level=2)
    model = PromptGenerator(cfg).eval()
    x, emb = torch.rand(2, 3, 64, 64), torch.rand(2, 6, 16, 16)
    with torch.no_grad():
        out = model(x, emb)
        assert out.shape == (2, 3, 64, 64)
        assert not torch.allclose(out, model(x, torch.rand(2, 6, 16, 16)))  # it is read
        # another grid (a padded or larger tile) is resized to the level's
        assert model(x, torch.rand(2, 6, 8, 8)).shape == (2, 3, 64, 64)
        assert model.style(x, emb).shape == (2, 2 * sum(cfg.widths))
    with pytest.raises(ValueError, match="reads a SAM image embedding"):
        model(x)
    with pytest.raises(ValueError, match="does not read"):
        PromptGenerator(GeneratorConfig(widths=(8, 16)))(x, emb)
    with pytest.raises(ValueError, match="embed_level"):
        PromptGenerator(GeneratorConfig(widths=(8, 16), embed_chans=4, embed_level=2))


@pytest.mark.usefixtures("one_thread")
def test_embedding_carries_what_the_image_lacks() -> None:
    """On a blank image whose nuclei show only in the embedding (a coarse mask, as SAM's
    features would carry them), the generator that reads it finds them; the plain one
    cannot."""
    rng = np.random.default_rng(0)

    def sample() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spec = [(int(rng.integers(10, 54)), int(rng.integers(10, 54)), 8) for _ in range(2)]
        fg = torch.from_numpy((disks((64, 64), spec) > 0).astype(np.float32))[None, None]
        return torch.full((1, 3, 64, 64), 0.5), F.avg_pool2d(fg, 4), fg

    def dice_after_training(embed: bool) -> float:
        torch.manual_seed(0)
        model = PromptGenerator(GeneratorConfig(widths=(8, 16, 32), out_chans=1,
                                                embed_chans=1 if embed else 0))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(120):
            img, emb, fg = (torch.cat(t) for t in zip(*(sample() for _ in range(4)),
                                                       strict=True))
            loss = F.binary_cross_entropy_with_logits(model(img, emb if embed else None), fg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        img, emb, fg = sample()
        with torch.no_grad():
            pred = (model(img, emb if embed else None) > 0).float()
        return float(2 * (pred * fg).sum() / (pred.sum() + fg.sum()))

    assert dice_after_training(embed=True) > 0.8
    assert dice_after_training(embed=False) < 0.5


def test_targets_on_touching_disks() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 48, 12)])  # centres 23 px apart: touching
    assert (labels[32, 36:38] > 0).all() and len(np.unique(labels[32, 30:44])) == 2
    t = generator_targets(labels)
    assert t.shape == (3, 64, 80) and t.dtype == np.float32
    np.testing.assert_array_equal(t[0], labels > 0)
    np.testing.assert_array_equal(t[1], find_boundaries(labels, mode="inner"))
    # the boundary separates the two disks where they touch
    contact = (labels[:, :-1] == 1) & (labels[:, 1:] == 2)
    rows, cols = np.nonzero(contact)
    assert rows.size > 0
    assert t[1][rows, cols].all() and t[1][rows, cols + 1].all()
    # the centre heatmap peaks at exactly 1 at the disk centres, and only there
    assert t[2][32, 25] == 1.0 and t[2][32, 48] == 1.0
    assert np.count_nonzero(t[2] == 1.0) == 2
    assert t[2].min() >= 0 and t[2][0, 0] < 1e-3


def test_targets_sigma_and_empty() -> None:
    labels = disks((48, 48), [(24, 24, 10)])
    narrow = generator_targets(labels, sigma=1.0)[2]
    wide = generator_targets(labels)[2]  # sigma = 0.5 * 10 = 5
    assert narrow[24, 27] < wide[24, 27]
    sigma = 0.5 * np.sqrt((labels > 0).sum() / np.pi)
    np.testing.assert_allclose(wide[24, 29], np.exp(-25 / (2 * sigma**2)), rtol=1e-5)
    empty = generator_targets(np.zeros((16, 16), np.int32))
    assert empty.shape == (3, 16, 16) and not empty.any()


def test_targets_centre_inside_concave_nucleus() -> None:
    yy, xx = np.mgrid[:64, :64]
    ring = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2) & ((yy - 32) ** 2 + (xx - 32) ** 2 >= 12**2)
    c_shape = (ring & ~((xx > 32) & (abs(yy - 32) < 6))).astype(np.uint16)
    heat = generator_targets(c_shape)[2]
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert heat[peak] == 1.0 and c_shape[peak] == 1


def test_distance_target_on_touching_disks_and_an_ellipse() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 48, 12)])
    labels[labels == 2] = 70000  # ids need not be sequential or small
    d = generator_targets(labels, centre="distance")
    g = generator_targets(labels)
    np.testing.assert_array_equal(d[:2], g[:2])  # foreground and boundary are unchanged
    assert (d[2][labels == 0] == 0).all() and (d[2][labels > 0] > 0).all()
    assert d[2].max() == 1.0
    # each disk peaks at its own centre, measured within its own mask: the contact line,
    # where the two disks touch, is edge for both
    for i, x in ((1, 25), (70000, 48)):
        peak = np.unravel_index(int(np.argmax(np.where(labels == i, d[2], 0))), labels.shape)
        assert abs(peak[0] - 32) <= 1 and abs(peak[1] - x) <= 2
    contact = (labels[:, :-1] == 1) & (labels[:, 1:] == 70000)
    rows, cols = np.nonzero(contact)
    assert d[2][rows, cols].max() <= 1 / 12 + 1e-6
    # an elongated nucleus: the map is highest along its long axis, not in a round blob
    yy, xx = np.mgrid[:40, :80]
    ellipse = (((xx - 40) / 30.0) ** 2 + ((yy - 20) / 6.0) ** 2 <= 1).astype(np.uint8)
    e = generator_targets(ellipse, centre="distance")[2]
    assert e[20, 25] > 0.7 and e[20, 55] > 0.7 and e[14, 40] < 0.3
    with pytest.raises(ValueError, match="centre target"):
        generator_targets(labels, centre="blob")


def _logits(target: np.ndarray) -> torch.Tensor:
    """Logits whose maps are (almost exactly) the given 4-channel targets."""
    t = torch.from_numpy(target)[None].clamp(-0.999, 0.999)
    return torch.cat([torch.logit(t[:, :2].clamp(1e-3, 1 - 1e-3)), torch.atanh(t[:, 2:])], 1)


def test_hv_target_on_touching_disks() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 48, 12)])
    t = generator_targets(labels, centre="hv")
    assert t.shape == (4, 64, 80) and t.dtype == np.float32
    np.testing.assert_array_equal(t[:2], generator_targets(labels)[:2])
    h, v = t[2], t[3]
    assert (h[labels == 0] == 0).all() and (v[labels == 0] == 0).all()
    assert h.min() == -1 and h.max() == 1 and v.min() == -1 and v.max() == 1
    # offsets from each disk's own centre: 0 there, -1 / +1 at its left / right extremes
    for cx in (25, 48):
        assert abs(h[32, cx]) < 0.05 and abs(v[32, cx]) < 0.05  # centroid within a pixel
        assert h[32, cx - 5] < 0 < h[32, cx + 5] and v[27, cx] < 0 < v[37, cx]
    assert h[32, 25 - 12] == -1 and v[32 - 12, 25] == -1 and v[32 + 12, 48] == 1
    # where the disks touch, the horizontal map jumps from the first's +side to the second's -
    contact = (labels[:, :-1] == 1) & (labels[:, 1:] == 2)
    rows, cols = np.nonzero(contact)
    assert (h[rows, cols] > 0.6).all() and (h[rows, cols + 1] < -0.6).all()
    assert generator_targets(np.zeros((8, 8), np.int32), centre="hv").shape == (4, 8, 8)


def test_hv_maps_give_a_centre_map_that_splits_touching_disks() -> None:
    labels = disks((64, 80), [(32, 25, 12), (32, 46, 12)])  # overlapping: one fg blob
    assert len(np.unique(labels)) == 3
    probs = map_probabilities(_logits(generator_targets(labels, centre="hv")), hv=True)[0]
    assert probs.shape == (3, 64, 80)
    fg, centre = probs[0].numpy(), probs[2].numpy()
    assert centre.min() >= 0 and centre.max() <= 1
    assert centre[32, 25] > 0.95 and centre[32, 46] > 0.95 and centre[5, 5] < 1e-2
    assert centre[32, 35:37].max() < 0.3  # low where the disks meet
    # a smooth prediction passes through 0 between the disks; that is no centre either
    blurred = F.avg_pool2d(torch.from_numpy(generator_targets(labels, centre="hv"))[None],
                           3, 1, 1, count_include_pad=False)[0].numpy()
    soft = map_probabilities(_logits(blurred), hv=True)[0, 2].numpy()
    crossing = int(np.argmin(np.abs(blurred[2, 32, 30:42]))) + 30
    assert abs(blurred[2, 32, crossing]) < 0.35 and soft[32, crossing] < 0.05
    assert soft[32, 25] > 0.8 and soft[32, 46] > 0.8
    # with the foreground alone (no boundary map), the centre map's peaks split them
    found = detect_nuclei(fg, centre, None, min_distance=3, centre_thresh=0.5)
    assert found.max() == 2
    assert found[32, 25] != found[32, 46] and found[32, 25] > 0 and found[32, 46] > 0


def test_hv_centre_map_is_flip_and_transpose_invariant() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 16, 24)
    ref = map_probabilities(logits, hv=True)
    flipped = logits.flip(-1).clone()
    flipped[:, 2] = -flipped[:, 2]  # a left-right flip negates horizontal offsets
    torch.testing.assert_close(map_probabilities(flipped, hv=True).flip(-1), ref)
    swapped = logits.transpose(-1, -2)[:, [0, 1, 3, 2]]  # a transpose swaps h and v
    torch.testing.assert_close(map_probabilities(swapped, hv=True).transpose(-1, -2), ref)
    # without hv the maps are the sigmoids of the first three channels
    torch.testing.assert_close(map_probabilities(logits[:, :3]), torch.sigmoid(logits[:, :3]))
    with pytest.raises(ValueError, match="4"):
        map_probabilities(logits[:, :3], hv=True)


def test_hv_loss_values_and_gradients() -> None:
    labels = disks((48, 64), [(24, 20, 10), (24, 38, 9)])
    target = torch.from_numpy(generator_targets(labels, centre="hv"))[None]
    valid = torch.ones(1, 48, 64)
    n = valid.sum()
    focus = target[:, 0] * valid
    exact = _logits(target[0].numpy())
    low = float(hv_loss(exact[:, 2:], target[:, 2:], focus, valid[:, None], n))
    assert low < 1e-4
    # the same values smoothed across the contact: small value error, larger gradient error
    smooth = torch.atanh(F.avg_pool2d(target[:, 2:], 5, 1, 2).clamp(-0.999, 0.999))
    value_only = float(((torch.tanh(smooth) - target[:, 2:]) ** 2).sum() / n)
    assert float(hv_loss(smooth, target[:, 2:], focus, valid[:, None], n)) > 1.5 * value_only
    # the generator loss takes 4-channel logits and targets, and refuses mixed ones
    assert float(generator_loss(exact, target, valid)) < 0.1
    with pytest.raises(ValueError, match="3 or 4 channels"):
        generator_loss(exact[:, :3], target, valid)


@pytest.mark.usefixtures("one_thread")
def test_tiny_hv_generator_learns_touching_disks() -> None:
    labels = disks((64, 64), [(30, 22, 10), (30, 41, 10)])
    target = torch.from_numpy(generator_targets(labels, centre="hv"))[None]
    img = torch.full((1, 3, 64, 64), 0.2)
    img[:, :, torch.from_numpy(labels > 0)] = 0.8
    img += 0.03 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = PromptGenerator(GeneratorConfig(widths=(8, 16, 32), hv=True))
    assert model(img).shape == (1, 4, 64, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    valid = torch.ones(1, 64, 64)
    for _ in range(400):
        loss = generator_loss(model(img), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probs = map_probabilities(model(img), hv=True)[0].numpy()
    found = detect_nuclei(probs[0], probs[2], probs[1], min_distance=3, centre_thresh=0.3)
    assert found.max() == 2 and found[30, 22] != found[30, 41]
