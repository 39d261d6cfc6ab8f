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
    pad_to_stride,
    split_outputs,
)
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
