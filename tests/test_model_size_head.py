"""The size head: style vectors, the regression, its file in a model folder, and its fit."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sac.core.errors import WeightsError
from sac.model import create_model, load_model, save_model
from sac.model.size_head import SIZE_HEAD_FILE, SizeHead, image_style, style_dim
from sac.modeling.generator import GeneratorConfig, PromptGenerator
from sac.training.size_fit import fit_size_head, ridge, spread, write_size_head

from synthetic import grid_disks


def test_style_vector_shape_and_crop() -> None:
    gen = PromptGenerator(GeneratorConfig(widths=(8, 16))).eval()
    x = torch.rand(2, 3, 32, 48)
    assert gen.style(x).shape == (2, style_dim((8, 16))) == (2, 48)
    with pytest.raises(ValueError, match="multiples"):
        gen.style(torch.rand(1, 3, 31, 32))
    rgb = np.random.default_rng(0).random((1500, 1300, 3), dtype=np.float32)
    centre = rgb[238:1262, 138:1162]  # the central 1024 x 1024 crop
    np.testing.assert_allclose(image_style(gen, rgb), image_style(gen, centre), rtol=1e-5)


def test_head_predicts_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    y = 2.0 + x @ np.array([0.3, -0.2, 0.0, 0.1, 0.0, 0.05])
    head = ridge(x, y, 0.1)
    assert head.predict(x[0]) == pytest.approx(math.exp(y[0]), rel=0.02)
    back = SizeHead.from_state(head.state(), 6, "test")
    assert back.predict(x[3]) == pytest.approx(head.predict(x[3]), rel=1e-5)
    with pytest.raises(WeightsError, match="does not fit"):
        SizeHead.from_state(head.state(), 7, "test")
    bad = head.state()
    bad["std"][0] = 0.0
    with pytest.raises(WeightsError, match="non-positive"):
        SizeHead.from_state(bad, 6, "test")


def _disk_data(radii: list[int], seed: int = 0) -> dict[str, SimpleNamespace]:
    data = {}
    for i, r in enumerate(radii, start=seed):
        image, labels = grid_disks(r, n_side=max(3, math.ceil(240 / (3.2 * r))), seed=i)
        data[f"r{r}_{i}"] = SimpleNamespace(image=image, labels=labels)
    return data


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(tiny=True, nucleus_diameter=16.0, nucleus_diameter_range=(10.0, 24.0))
    train, val = _disk_data([6, 8, 10, 12]), _disk_data([7, 11], seed=10)
    head, record = fit_size_head(model, {**train, **val}, list(train), list(val))
    return model, head, record


def test_fit_recovers_held_out_sizes(fitted) -> None:
    """Fitted on disks of 12-24 px across shown at 0.25-4x, the head reads held-out sizes
    (as a random generator's styles allow) within 1.5x."""
    model, head, record = fitted
    assert record["train_images"] == 4 and record["train_views"] > 20
    assert record["val"]["within_1.5x"] >= 0.8, record
    for r in (5, 9, 15):
        image, _ = grid_disks(r, n_side=max(3, math.ceil(240 / (3.2 * r))), seed=7)
        got = head.predict(image_style(model.generator, image.astype(np.float32) / 255))
        assert 2 * r / 1.5 <= got <= 2 * r * 1.5, (r, got)


def test_size_head_in_model_folder(fitted, tmp_path) -> None:
    model, head, record = fitted
    folder = save_model(model, tmp_path / "m")
    assert load_model(folder).size_head is None  # no head: the foreground map alone
    write_size_head(folder, head, record)
    loaded = load_model(folder)
    assert json.loads((folder / "config.json").read_text())["size_head"]["penalty"] > 0
    style = np.random.default_rng(0).random(head.mean.shape)
    assert loaded.size_head.predict(style) == pytest.approx(head.predict(style), rel=1e-4)
    again = save_model(loaded, tmp_path / "m2")  # a re-saved model keeps its head
    assert load_model(again).size_head is not None
    (folder / SIZE_HEAD_FILE).unlink()
    with pytest.raises(WeightsError, match=r"size_head\.safetensors is missing"):
        load_model(folder)
    (folder / SIZE_HEAD_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_model(folder)


def test_spread_keeps_ends() -> None:
    names = [f"n{i:03d}" for i in range(100)]
    picked = spread(names, 5)
    assert picked[0] == "n000" and picked[-1] == "n099" and len(picked) == 5
    assert spread(names[:3], 5) == names[:3]
