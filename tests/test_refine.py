"""``sac refine``: other tools' labels read from label images, GeoJSON and ImageJ ROIs, and
SAM's outlines put in their place with the same ids."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from sac.cli import main
from sac.core.errors import InputError
from sac.data.shapes import read_label_file
from sac.outputs.geojson import write_geojson
from sac.outputs.rois import write_imagej_rois
from sac.pipeline.refine import RefineSettings, refine_labels
from sac.pipeline.segmenter import load_segmenter

from synthetic import DEFAULT_DISKS, disk_image, disk_labels


def _awkward_labels() -> np.ndarray:
    """Labels with a hole, a nucleus touching the border, touching neighbours, big ids."""
    labels = disk_labels((64, 80), [(20, 20, 9), (20, 37, 8), (50, 70, 12), (55, 10, 6)])
    labels[labels == 3] = 7000  # an id kept by both formats
    ring = disk_labels((64, 80), [(40, 40, 7)]) > 0
    ring &= ~(disk_labels((64, 80), [(40, 40, 3)]) > 0)
    labels[ring] = 12
    return labels


@pytest.mark.parametrize("kind", ["geojson", "rois"])
def test_outlines_read_back_to_the_labels_they_came_from(kind: str, tmp_path: Path) -> None:
    labels = _awkward_labels()
    want = labels.copy()
    if kind == "geojson":
        path = write_geojson(tmp_path / "n.geojson", labels)
    else:  # an ImageJ polygon ROI has no holes: the ring comes back filled
        path = write_imagej_rois(tmp_path / "n_rois.zip", labels)
        want[disk_labels(labels.shape, [(40, 40, 3)]) > 0] = 12
    back = read_label_file(path, labels.shape)
    assert np.array_equal(back, want)  # pixel for pixel, ids included


def test_label_files_without_ids_are_numbered_and_bad_files_named(tmp_path: Path) -> None:
    import json

    square = [[2, 2], [10, 2], [10, 8], [2, 8], [2, 2]]  # pixels x 2..9, y 2..7
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
         "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[20, 20], [24, 20], [24, 24], [20, 24]]]]}, "properties": {}}]}
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(doc))
    got = read_label_file(path, (30, 30))
    assert np.unique(got).tolist() == [0, 1, 2]  # the point has no area
    assert (got == 1).sum() == 8 * 6 and got[2, 2] == 1 and got[8, 10] == 0
    assert (got == 2).sum() == 16
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    cases = [(bad, "not a readable GeoJSON"), (tmp_path / "none.tif", "no such labels file"),
             (path.with_suffix(".txt"), "no such")]
    path.with_suffix(".txt").write_text("x")
    cases[-1] = (path.with_suffix(".txt"), "must be a label image or outlines")
    for file, message in cases:
        with pytest.raises(InputError, match=message):
            read_label_file(file, (30, 30))
    with pytest.raises(InputError, match="no outline falls inside"):
        read_label_file(path, (2, 2))
    tifffile.imwrite(tmp_path / "small.tif", np.ones((5, 5), np.uint16))
    with pytest.raises(InputError, match="size mismatch"):
        read_label_file(tmp_path / "small.tif", (30, 30))


@pytest.fixture(scope="module")
def disks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright disks and another tool's rough labels: four shrunk by 4 px, one spilling."""
    image, truth = disk_image((256, 256), DEFAULT_DISKS)
    rough = np.zeros_like(truth)
    for k in range(1, 5):
        rough[ndi.binary_erosion(truth == k, iterations=4)] = k
    rough[ndi.binary_dilation(truth == 5, iterations=5)] = 5
    return image, truth, rough


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.weights
def test_refine_fixes_shrunk_and_spilt_outlines_keeping_ids(disks) -> None:
    image, truth, rough = disks
    seg = load_segmenter("sac-lite-dsb2018")
    out = refine_labels(seg, image, rough, RefineSettings(repair=False))
    assert out.repaired is None and out.nuclei == 5
    assert np.unique(out.labels).tolist() == [0, 1, 2, 3, 4, 5]
    for k in range(1, 6):
        before, after = _iou(rough == k, truth == k), _iou(out.labels == k, truth == k)
        assert after > max(before + 0.1, 0.85), (k, before, after)
    assert out.changed == 5 and sum(out.kept.values()) == 0
    assert set(out.scores) == {1, 2, 3, 4, 5}
    # an impossible agreement keeps every outline as given
    strict = refine_labels(seg, image, rough, RefineSettings(min_iou=1.0, repair=False))
    assert np.array_equal(strict.labels, rough) and strict.changed == 0
    assert strict.kept["moved"] == 5 and "5 kept as given (5 moved)" in strict.summary()
    empty = refine_labels(seg, image, np.zeros_like(rough))
    assert empty.nuclei == 0 and not empty.labels.any()
    texture = np.zeros_like(rough)
    texture[5:25, 5:25] = 3  # no nucleus there: repairing drops the only object
    gone = refine_labels(seg, image, texture)
    assert not gone.labels.any() and gone.changed == 1
    assert gone.repaired == {"split": 0, "joined": 0, "dropped": 1}
    # repairing (the default) ends with the same five nuclei under the same ids, although the
    # generator cuts the big disk into pieces at fp32 (SAM finds one nucleus from each)
    fixed = refine_labels(seg, image, rough)
    assert fixed.repaired == {"split": 0, "joined": 0, "dropped": 0}
    assert np.unique(fixed.labels).tolist() == [0, 1, 2, 3, 4, 5]
    assert min(_iou(fixed.labels == k, truth == k) for k in range(1, 6)) > 0.85


@pytest.mark.weights
def test_refine_command(disks, tmp_path: Path, capsys) -> None:
    image, truth, rough = disks
    iio.imwrite(tmp_path / "cells.png", image)
    rois = write_imagej_rois(tmp_path / "tool_rois.zip", rough)
    out = tmp_path / "out"
    args = ["refine", str(tmp_path / "cells.png"), "--labels", str(rois), "-o", str(out),
            "--model", "sac-lite-dsb2018", "--save-geojson"]
    assert main(args) == 0
    assert "5 of 5 nuclei changed" in capsys.readouterr().err
    got = tifffile.imread(out / "cells_labels.tif")
    assert np.unique(got).tolist() == [0, 1, 2, 3, 4, 5]
    assert min(_iou(got == k, truth == k) for k in range(1, 6)) > 0.85
    assert np.array_equal(read_label_file(out / "cells.geojson", got.shape), got)
    before = (out / "cells_labels.tif").stat().st_mtime_ns
    assert main(args) == 4  # outputs exist: refused, untouched
    assert (out / "cells_labels.tif").stat().st_mtime_ns == before
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "junk.geojson").write_text("[]")
    assert main([*args[:3], str(tmp_path / "junk.geojson"), "-o", str(tmp_path / "o2")]) == 2
    assert "junk.geojson: no outline falls inside" in capsys.readouterr().err


@pytest.mark.weights
def test_repair_splits_joins_and_drops_a_thresholds_mistakes(tmp_path: Path, capsys) -> None:
    """A threshold's labels: two touching nuclei merged, one cut in two, a patch of background
    outlined. Refining splits, joins and drops them by the model's detections, then SAM
    outlines each nucleus; with --keep-objects the objects stay as they were."""
    disks = [(60, 60, 14), (60, 88, 14), (170, 70, 16), (170, 180, 15)]
    image, truth = disk_image((256, 256), disks)
    given = np.zeros_like(truth)
    given[(truth == 1) | (truth == 2)] = 1
    half = np.zeros(truth.shape, bool)
    half[:, :70] = True
    given[(truth == 3) & half] = 2
    given[(truth == 3) & ~half] = 3
    given[truth == 4] = 4
    given[205:235, 120:150] = 9
    seg = load_segmenter("sac-lite-dsb2018")
    plain = refine_labels(seg, image, given, RefineSettings(repair=False))
    # the objects kept: each half keeps its id, no mask takes the other half's pixels
    assert plain.repaired is None and np.unique(plain.labels).tolist() == [0, 1, 2, 3, 4, 9]
    out = refine_labels(seg, image, given)
    assert out.repaired == {"split": 1, "joined": 1, "dropped": 1}, out.summary()
    assert out.summary().endswith("1 split, 1 joined, 1 dropped of those given; 4 nuclei now")
    ids = np.unique(out.labels)[1:]
    assert len(ids) == 4 and 9 not in ids and not out.labels[205:235, 120:150].any()
    for k in range(1, 5):  # each true nucleus is one refined nucleus
        best = max(_iou(out.labels == i, truth == k) for i in ids)
        assert best > 0.8, (k, best)
    assert {out.labels[60, 60], out.labels[60, 88]} & {1}  # one part keeps the merge's id
    iio.imwrite(tmp_path / "cells.png", image)
    tifffile.imwrite(tmp_path / "given.tif", given)
    assert main(["refine", str(tmp_path / "cells.png"), "--labels", str(tmp_path / "given.tif"),
                 "-o", str(tmp_path / "out"), "--model", "sac-lite-dsb2018"]) == 0
    assert "repaired by the model's detections" in capsys.readouterr().err
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "cells_labels.tif"), out.labels)
    assert main(["refine", str(tmp_path / "cells.png"), "--labels", str(tmp_path / "given.tif"),
                 "-o", str(tmp_path / "kept"), "--model", "sac-lite-dsb2018",
                 "--keep-objects"]) == 0
    assert "repaired" not in capsys.readouterr().err
    kept = tifffile.imread(tmp_path / "kept" / "cells_labels.tif")
    assert np.array_equal(kept, plain.labels)
