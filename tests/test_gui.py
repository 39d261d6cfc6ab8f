"""The napari plugin, headless (Qt offscreen): the manifest, Segment, click-to-correct,
export, cancel, and the sample; the shipped fluorescence model on synthetic bright disks."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")  # installed by the test command: a skip means no extra

from sac.gui import session  # noqa: E402

from synthetic import disk_image  # noqa: E402

pytestmark = pytest.mark.weights
MODEL = "sac-lite-dsb2018"
DISKS = [(40, 40, 9), (40, 120, 10), (110, 50, 9), (115, 140, 11), (80, 90, 8)]


@pytest.fixture
def disks() -> tuple[np.ndarray, np.ndarray]:
    return disk_image((160, 192), DISKS, seed=3)


def _segment(viewer, qtbot, image: np.ndarray, model: str = MODEL):
    from sac.gui.segment_widget import SegmentWidget

    viewer.add_image(image, name="cells", rgb=True)
    w = SegmentWidget(viewer)
    w.model.setCurrentText(model)
    w.prompts.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    return w


def test_manifest_validates() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from npe2 import PluginManifest

    npe2_cli = Path(sys.executable).with_name("npe2")
    run = subprocess.run([str(npe2_cli), "validate", "segment-any-cell"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0 and "valid" in run.stdout, run.stdout + run.stderr

    pm = PluginManifest.from_distribution("segment-any-cell")
    assert {c.id for c in pm.contributions.commands} >= {
        "segment-any-cell.segment", "segment-any-cell.correct", "segment-any-cell.export",
        "segment-any-cell.ihc_sample"}
    assert [s.key for s in pm.contributions.sample_data] == ["ihc"]


def test_model_list_is_the_shipped_models_default_first(make_napari_viewer) -> None:
    from sac.batch.settings import DEFAULT_MODEL
    from sac.gui.segment_widget import SegmentWidget
    from sac.model import shipped_models

    names = session.shipped_names()
    assert names[0] == DEFAULT_MODEL and sorted(names) == sorted([*shipped_models(), "auto"])
    w = SegmentWidget(make_napari_viewer())
    assert [w.model.itemText(i) for i in range(w.model.count())] == names


def test_sample_is_the_demo_image() -> None:
    [(data, meta, kind)] = session.ihc_sample_data()
    assert data.shape == (512, 512, 3) and kind == "image" and meta["name"]


def test_segment_widget_adds_one_label_per_disk(make_napari_viewer, qtbot, disks) -> None:
    viewer = make_napari_viewer()
    w = _segment(viewer, qtbot, disks[0])
    labels = viewer.layers["cells nuclei"].data
    assert len(np.unique(labels)) - 1 == len(DISKS)
    for cy, cx, _ in DISKS:
        assert labels[cy, cx] > 0
    prompts = viewer.layers["cells prompts"].data
    assert len(prompts) >= len(DISKS)  # a positive per nucleus (and any negatives)
    assert "5 nuclei" in w.status.text()


def test_auto_segments_with_the_specialist_and_records_it(make_napari_viewer, qtbot,
                                                          disks) -> None:
    """``auto`` in the model list: the bright disks on a dark background are a fluorescence
    image, so the DSB model segments them, and the layer records that model (the Correct
    widget then works with it)."""
    viewer = make_napari_viewer()
    w = _segment(viewer, qtbot, disks[0], model="auto")
    layer = viewer.layers["cells nuclei"]
    assert len(np.unique(layer.data)) - 1 == len(DISKS)
    assert layer.metadata["sac"]["model"] == MODEL and MODEL in w.status.text()


def test_clicks_add_and_remove_nuclei(make_napari_viewer, qtbot, disks) -> None:
    from sac.gui.correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    _segment(viewer, qtbot, disks[0])
    layer = viewer.layers["cells nuclei"]
    missing = int(layer.data[115, 140])
    data = layer.data.copy()
    data[data == missing] = 0  # as if SAC had missed this disk
    layer.data = data
    c = CorrectWidget(viewer)
    c.labels.setCurrentText("cells nuclei")
    c.start()
    qtbot.waitUntil(lambda: c.ready, timeout=120_000)  # the image is embedded once
    before = len(np.unique(layer.data))
    c.set_mode(True)
    c.clicks.add([115, 140])  # a positive click (row, col) on the unsegmented disk
    after = layer.data
    assert len(np.unique(after)) == before + 1
    new = int(after[115, 140])
    assert new > 0
    truth = disks[1] == disks[1][115, 140]
    inter = ((after == new) & truth).sum()
    assert inter / ((after == new) | truth).sum() > 0.7
    c.set_mode(False)
    gone = int(after[40, 40])
    c.clicks.add([40, 40])  # a negative click in the middle of a nucleus removes it
    assert not (layer.data == gone).any() and len(np.unique(layer.data)) == before
    assert len(c.clicks.data) == 2


def test_export_writes_files_that_read_back(make_napari_viewer, qtbot, disks, tmp_path
                                            ) -> None:
    from sac.gui.export_widget import ExportWidget

    viewer = make_napari_viewer()
    _segment(viewer, qtbot, disks[0])
    e = ExportWidget(viewer)
    e.labels.setCurrentText("cells nuclei")
    e.image.setCurrentText("cells")
    e.folder.setText(str(tmp_path))
    e.stem.setText("cells")
    files = e.export()
    assert sorted(p.name for p in files) == ["cells.geojson", "cells_labels.tif",
                                             "cells_nuclei.csv", "cells_rois.zip"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells_labels.tif"),
                                  viewer.layers["cells nuclei"].data)
    doc = json.loads((tmp_path / "cells.geojson").read_text())
    assert len(doc["features"]) == len(DISKS)
    rows = (tmp_path / "cells_nuclei.csv").read_text().splitlines()
    assert len(rows) == 1 + len(DISKS)
    assert e.export() == [] and "already exists" in e.status.text()  # never overwritten


def test_cancel_leaves_no_layer(make_napari_viewer, qtbot, disks) -> None:
    from sac.gui.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(disks[0], name="cells", rgb=True)
    w = SegmentWidget(viewer)
    w.model.setCurrentText(MODEL)
    w.run()
    w.cancel()  # at once: the worker stops at its first step
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    assert "cells nuclei" not in viewer.layers
    assert "cancelled" in w.status.text() and w.run_button.isEnabled()


def test_session_cancel_raises_before_any_result(disks) -> None:
    seg = session.segmenter(MODEL)
    stop = threading.Event()
    seen = []

    def progress(stage, done, total):
        seen.append(stage)
        stop.set()  # the user presses Cancel during the first step

    with pytest.raises(session.Cancelled):
        session.segment(seg, disks[0], cancel=stop, progress=progress)
    assert seen == ["generator"]


def test_whole_slide_opens_multiscale_and_a_drawn_region_is_segmented(make_napari_viewer,
                                                                       qtbot, tmp_path) -> None:
    from sac.gui.segment_widget import SegmentWidget

    from synthetic import write_pyramid

    disks = [(60, 60, 9), (60, 200, 10), (200, 80, 9), (300, 330, 10), (330, 120, 9)]
    image, _ = disk_image((400, 420), disks, seed=5)
    path = write_pyramid(tmp_path / "slide.tif", image)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="segment-any-cell")
    assert layer.multiscale and len(layer.data) == 2
    assert layer.data[0].shape == (400, 420, 3) and layer.data[1].shape == (200, 210, 3)
    np.testing.assert_array_equal(layer.data[0][50:70, 40:90], image[50:70, 40:90])
    # a rectangle around the two disks of the upper half only
    viewer.add_shapes([[[20, 20], [20, 250], [240, 250], [240, 20]]], shape_type="rectangle",
                      name="region")
    w = SegmentWidget(viewer)
    w.image.setCurrentText("slide")
    w.model.setCurrentText(MODEL)
    w.run()
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    nuclei = viewer.layers["slide nuclei"]
    assert nuclei.data.shape == (220, 230)
    np.testing.assert_allclose(nuclei.translate[-2:], [20, 20])
    assert len(np.unique(nuclei.data)) - 1 == 3  # the disks inside the rectangle
    for cy, cx, _ in disks[:3]:
        assert nuclei.data[cy - 20, cx - 20] > 0


def test_train_widget_fine_tunes_on_painted_labels_and_lists_the_model(
        make_napari_viewer, qtbot, disks, tmp_path, monkeypatch) -> None:
    """Train: the viewer's image/labels pairs, cancel (no model), a short fine-tuning run
    whose model joins the Segment widget's list at once and segments the image."""
    from qtpy.QtCore import Qt

    from sac.gui.train_widget import TrainWidget, training_pairs
    from sac.training import run as run_module
    from sac.training.run import FewShotRecipe

    monkeypatch.setattr(run_module, "FEW_SHOT", FewShotRecipe(1, 2, 1))  # 2 steps, for speed
    monkeypatch.setattr(session, "TRAINED", [])
    monkeypatch.setattr(session, "MODEL_LISTENERS", [])
    image, truth = disks
    viewer = make_napari_viewer()
    seg_widget = _segment(viewer, qtbot, image)  # adds "cells nuclei" (and prompts)
    viewer.add_labels(truth.astype(np.int32), name="painted")
    w = TrainWidget(viewer)
    assert training_pairs(viewer) == {"cells nuclei": "cells", "painted": "cells"}
    assert w.chosen() == [("cells nuclei", "cells"), ("painted", "cells")]  # all ticked
    w.pairs.item(0).setCheckState(Qt.Unchecked)
    assert w.chosen() == [("painted", "cells")]
    w.base.setCurrentText(MODEL)

    w.folder.setText(str(tmp_path / "cancelled"))
    w.train()
    w.cancel()
    qtbot.waitUntil(lambda: not w.busy, timeout=300_000)
    assert w.status.text() == "cancelled: no model added" and session.TRAINED == []

    w.folder.setText(str(tmp_path / "ft"))
    w.train()
    qtbot.waitUntil(lambda: not w.busy, timeout=300_000)
    assert w.model_dir == tmp_path / "ft" / "run" / "model", w.status.text()
    assert [str(w.model_dir)] == session.TRAINED
    names = [seg_widget.model.itemText(i) for i in range(seg_widget.model.count())]
    assert names[-1] == str(w.model_dir)  # in the Segment widget's list at once
    tifffile.imread(tmp_path / "ft" / "data" / "labels" / "layer000.tif")  # what it learnt
    seg_widget.model.setCurrentText(str(w.model_dir))
    seg_widget.run()
    qtbot.waitUntil(lambda: not seg_widget.busy, timeout=120_000)
    labels = viewer.layers["cells nuclei"].data
    assert len(np.unique(labels)) - 1 >= 4  # 2 steps from the shipped model: still works
    assert viewer.layers["cells nuclei"].metadata["sac"]["model"] == str(w.model_dir)


def test_refine_labels_layer_from_another_tool(make_napari_viewer, qtbot, disks) -> None:
    """Correct > Refine labels layer: another tool's shrunk outlines come back as SAM's, ids
    kept, in a new layer; the tool's layer is left as it was."""
    from scipy import ndimage as ndi

    from sac.gui.correct_widget import CorrectWidget

    image, truth = disks
    rough = np.zeros_like(truth)
    for k in range(1, len(DISKS) + 1):
        rough[ndi.binary_erosion(truth == k, iterations=3)] = k
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", rgb=True)
    viewer.add_labels(rough.astype(np.int32), name="other tool")
    w = CorrectWidget(viewer)
    w.labels.setCurrentText("other tool")
    w.model.setCurrentText(MODEL)
    w.repair.setChecked(False)
    w.refine()
    qtbot.waitUntil(lambda: not w.refining, timeout=120_000)
    assert "refined: 5 of 5 nuclei changed" in w.status.text(), w.status.text()
    assert "repaired" not in w.status.text()
    got = np.asarray(viewer.layers["other tool refined"].data)
    assert np.unique(got).tolist() == list(range(len(DISKS) + 1))
    for k in range(1, len(DISKS) + 1):
        iou = ((got == k) & (truth == k)).sum() / ((got == k) | (truth == k)).sum()
        assert iou > 0.85, (k, iou)
    assert np.array_equal(viewer.layers["other tool"].data, rough)
    # with repair, a patch of background outlined by the tool is dropped
    patch = rough.copy()
    patch[5:20, 5:20] = 99
    viewer.layers["other tool"].data = patch.astype(np.int32)
    w.repair.setChecked(True)
    w.refine()
    qtbot.waitUntil(lambda: not w.refining, timeout=120_000)
    assert "repaired by the model's detections" in w.status.text(), w.status.text()
    assert "1 dropped" in w.status.text(), w.status.text()
    got = np.asarray(viewer.layers["other tool refined"].data)
    assert not got[5:20, 5:20].any() and len(np.unique(got)) == len(DISKS) + 1
