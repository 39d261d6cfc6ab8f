"""``sac evaluate`` end to end on tiny synthetic datasets in each format, bad input, the JSON
report, and the built-in splits (plus a real-data check that skips without ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import DSB, MONUSEG, make_dsb_sample, make_monuseg, rgb, save_png

from sac.cli import main
from sac.core.errors import ConfigError
from sac.data import (
    BUILTIN_SPLITS,
    DSB2018Dataset,
    FolderDataset,
    MoNuSegDataset,
    load_builtin_split,
    split_dsb,
    split_monuseg,
    split_monuseg_organs,
    write_split,
)
from sac.data.splits import monuseg_organ
from sac.metrics.report import MAIN_KEYS, evaluate_dataset, write_report
from sac.outputs.images import write_labels_tif

# One 10x10 square shifted by 2 columns: intersection 80, union 120.
SHIFTED = {
    "pixel_dice": 0.8, "pixel_iou": 2 / 3, "pixel_f1": 0.8, "f1_obj": 1.0, "aji": 2 / 3,
    "pq": 2 / 3, "dsb_score": 0.4,  # IoU 0.667 passes the thresholds 0.50 .. 0.65 only
}  # fmt: skip


def squares(shape: tuple[int, int], corners: list[tuple[int, int]], dx: int = 0) -> np.ndarray:
    """uint16 labels with a 10x10 square per (row, col) corner, shifted right by ``dx``."""
    lab = np.zeros(shape, np.uint16)
    for k, (r, c) in enumerate(corners, 1):
        lab[r : r + 10, c + dx : c + dx + 10] = k
    return lab


def make_folder(root: Path) -> None:
    """images/ + labels/: ``a`` with one square, ``b`` with two."""
    save_png(root / "images" / "a.png", rgb(40, 50))
    save_png(root / "images" / "b.png", rgb(40, 50, seed=1))
    save_png(root / "labels" / "a.png", squares((40, 50), [(5, 5)]))
    save_png(root / "labels" / "b.png", squares((40, 50), [(5, 5), (25, 30)]))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["evaluate", *args])
    except SystemExit as exc:  # refused while parsing the options
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_folder_perfect_and_shifted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "data")
    pred = tmp_path / "pred"
    write_labels_tif(pred / "a_labels.tif", squares((40, 50), [(5, 5)]))
    write_labels_tif(pred / "b_labels.tif", squares((40, 50), [(5, 5), (25, 30)], dx=2))
    report = tmp_path / "report.json"
    args = ["--data", str(tmp_path / "data"), "--format", "folder", "--predictions", str(pred)]
    code, out, err = run_cli([*args, "-o", str(report)], capsys)
    assert code == 0, err
    assert "mean (per image)" in out and "dataset (summed counts)" in out
    doc = json.loads(report.read_text())
    assert doc["n_scored"] == 2 and doc["n_skipped"] == 0 and doc["skipped"] == []
    assert doc["model"] is None and doc["predictions"] == str(pred)
    assert doc["dataset"]["format"] == "folder" and doc["wall_time_s"] >= 0
    rows = {r["name"]: r for r in doc["images"]}
    assert all(rows["a"][k] == 1.0 for k in MAIN_KEYS)
    assert {k: rows["b"][k] for k in MAIN_KEYS} == pytest.approx(SHIFTED)
    agg = doc["aggregate"]
    assert all(k in agg for k in (*MAIN_KEYS, "pixel_dice_sum", "pixel_iou_sum", "f1_obj_sum"))
    assert agg["pixel_dice"] == pytest.approx(0.9)  # mean of 1.0 and 0.8
    assert agg["pixel_dice_sum"] == pytest.approx(520 / 600)  # TP 260, FP 40, FN 40
    assert agg["n_images"] == 2 and agg["n_gt"] == 3
    # an existing report is kept unless --overwrite
    code, _, err = run_cli([*args, "-o", str(report)], capsys)
    assert code == 2 and "already exists" in err
    assert run_cli([*args, "-o", str(report), "--overwrite", "--limit", "1"], capsys)[0] == 0
    assert json.loads(report.read_text())["n_scored"] == 1


def test_monuseg_missing_prediction_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_monuseg(tmp_path / "data")  # AA: XML, BB: label PNG, CC: no annotation
    gt = MoNuSegDataset(tmp_path / "data")["TCGA-AA-0001"].labels
    pred = tmp_path / "pred"
    write_labels_tif(pred / "TCGA-AA-0001_labels.tif", gt)
    report = tmp_path / "r.json"
    data = ["--data", str(tmp_path / "data"), "--format", "monuseg"]
    code, out, err = run_cli([*data, "--predictions", str(pred), "-o", str(report)], capsys)
    assert code == 1
    assert "TCGA-BB-0002" in err and "prediction file not found" in err
    assert "TCGA-CC-0003" in err and "no annotation found" in err
    assert "scored 1 of 3" in out
    doc = json.loads(report.read_text())
    assert doc["n_scored"] == 1 and doc["n_skipped"] == 2 and doc["n_images"] == 3
    assert [s["name"] for s in doc["skipped"]] == ["TCGA-BB-0002", "TCGA-CC-0003"]
    assert doc["images"][0]["source"] == "monuseg:xml" and doc["aggregate"]["pq"] == 1.0


def test_dsb_corrupt_png_and_size_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, pred = tmp_path / "data", tmp_path / "pred"
    for sid in ("s1", "s2", "s3"):
        make_dsb_sample(data, sid, rgb(32, 48), [(2, 12, 2, 12), (20, 30, 20, 40)])
    (data / "s2" / "images" / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    ds = DSB2018Dataset(data)
    write_labels_tif(pred / "s1_labels.tif", ds["s1"].labels)
    write_labels_tif(pred / "s2_labels.tif", ds["s1"].labels)
    write_labels_tif(pred / "s3_labels.tif", np.zeros((32, 40), np.uint16))
    report = tmp_path / "r.json"
    code, _, err = run_cli(
        ["--data", str(data), "--format", "dsb2018", "--predictions", str(pred),
         "-o", str(report)], capsys)  # fmt: skip
    assert code == 1 and "cannot decode" in err and "size mismatch" in err
    doc = json.loads(report.read_text())
    assert doc["n_scored"] == 1 and doc["images"][0]["name"] == "s1"
    assert doc["images"][0]["dsb_score"] == 1.0
    assert {s["name"] for s in doc["skipped"]} == {"s2", "s3"}


def test_folder_label_size_mismatch_and_corrupt_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path)
    save_png(tmp_path / "images" / "c.png", rgb(40, 50))
    save_png(tmp_path / "labels" / "c.png", squares((30, 50), [(5, 5)]))  # wrong size
    (tmp_path / "images" / "d.png").write_bytes(b"not a png")
    save_png(tmp_path / "labels" / "d.png", squares((40, 50), [(5, 5)]))
    ds = FolderDataset(tmp_path)
    report = evaluate_dataset(ds, predict=lambda img, name: np.zeros(img.shape[:2], np.uint32),
                              progress=False)
    assert report.n_scored == 2 and [s.name for s in report.skipped] == ["c", "d"]
    assert "size mismatch" in report.skipped[0].message
    assert "cannot decode" in report.skipped[1].message
    assert report.aggregate["pixel_dice"] == 0.0  # empty predictions


def test_split_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "data")
    pred = tmp_path / "pred"
    for name in ("a", "b"):
        write_labels_tif(pred / f"{name}_labels.tif", squares((40, 50), [(5, 5)]))
    split = tmp_path / "split.json"
    write_split(split, ["a"], ["b", "zz"])
    base = ["--data", str(tmp_path / "data"), "--format", "folder", "--predictions", str(pred)]
    report = tmp_path / "r.json"
    code, _, err = run_cli([*base, "--split", str(split), "-o", str(report)], capsys)
    assert code == 1 and "zz: listed in the split but not found" in err
    doc = json.loads(report.read_text())
    assert [r["name"] for r in doc["images"]] == ["b"]  # default subset: val
    assert doc["dataset"]["subset"] == "val" and doc["dataset"]["split"] == str(split)
    code, out, _ = run_cli([*base, "--split", str(split), "--subset", "train"], capsys)
    assert code == 0 and "scored 1 of 1" in out
    assert run_cli([*base, "--subset", "val"], capsys)[0] == 4  # --subset needs --split
    code, _, err = run_cli([*base, "--split", "monuseg"], capsys)
    assert code == 4 and "none of the 6 val images" in err
    code, _, err = run_cli([*base, "--split", "nosuchsplit"], capsys)
    assert code == 4 and "not a built-in split" in err
    assert run_cli([*base, "--limit", "0"], capsys)[0] == 4
    assert run_cli([*base[:4], "--predictions", str(tmp_path / "none")], capsys)[0] == 2


class FakeResult:
    def __init__(self, labels: np.ndarray, semantic: np.ndarray | None) -> None:
        self.labels, self.semantic = labels, semantic


def test_predict_with_semantic_mask(tmp_path: Path) -> None:
    make_folder(tmp_path)
    truth = {n: FolderDataset(tmp_path)[n].labels for n in ("a", "b")}

    def predict(image: np.ndarray, name: str) -> FakeResult:
        assert image.dtype == np.uint8 and image.shape == (40, 50, 3)
        semantic = np.zeros((40, 50), bool)
        semantic[:, :25] = truth[name][:, :25] > 0  # only the left half is found
        return FakeResult(truth[name], semantic if name == "b" else None)

    report = evaluate_dataset(FolderDataset(tmp_path), predict=predict, progress=False)
    rows = {r["name"]: r for r in report.images}
    assert rows["a"]["pixel_dice"] == 1.0 and "semantic_pixel_dice" not in rows["a"]
    # b: square 1 (cols 5..14) found, square 2 (cols 30..39) not -> TP 100, FN 100
    assert rows["b"]["pixel_dice"] == 1.0
    assert rows["b"]["semantic_pixel_dice"] == pytest.approx(2 / 3)
    assert rows["b"]["semantic_pixel_iou"] == pytest.approx(0.5)
    agg = report.aggregate
    assert agg["n_images_semantic"] == 1 and agg["semantic_pixel_dice_sum"] == pytest.approx(2 / 3)
    assert "semantic mask (1 images)" in report.format_table()
    doc = report.to_json_dict({"backbone": "x"})
    assert doc["model"] == {"backbone": "x"} and "semantic_pixel_*" in doc["metrics"]
    with pytest.raises(ConfigError, match="exactly one"):
        evaluate_dataset(FolderDataset(tmp_path), progress=False)
    out = write_report(tmp_path / "r.json", report)
    assert json.loads(out.read_text())["n_scored"] == 2


def test_model_option_runs_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--model`` runs the real inference pipeline (a tiny, untrained model folder)."""
    from sac.model import create_model, save_model

    make_folder(tmp_path / "data")
    torch.manual_seed(0)
    folder = save_model(create_model(tiny=True), tmp_path / "model")
    report = tmp_path / "r.json"
    code, _, _ = run_cli(
        ["--data", str(tmp_path / "data"), "--format", "folder", "--model", str(folder),
         "--semantic", "-o", str(report)], capsys)  # fmt: skip
    assert code == 0
    doc = json.loads(report.read_text())
    assert doc["model"]["model"] == str(folder) and doc["model"]["precision"] == "auto"
    assert doc["model"]["config"]["model"]["backbone"] == "lite_medsam"
    assert doc["n_scored"] == len(doc["images"]) > 0
    assert "semantic_pixel_dice" in doc["images"][0]


def test_evaluate_with_a_model_folder(tmp_path: Path) -> None:
    """--model runs the real inference pipeline (a tiny untrained model) on every image."""
    from sac.model import create_model, save_model

    torch.manual_seed(0)
    folder = save_model(create_model(tiny=True), tmp_path / "model")
    from sac.metrics.evaluate import load_model_predict

    predict, config = load_model_predict(str(folder), "cpu", "fp32", semantic=True)
    res = predict(np.zeros((40, 50, 3), np.uint8), "x")
    assert res.labels.shape == (40, 50) and res.semantic.shape == (40, 50)
    assert config["model"]["backbone"] == "lite_medsam"


# --- built-in splits ------------------------------------------------------------------------
def test_builtin_splits_disjoint_and_deterministic() -> None:
    mon, dsb = load_builtin_split("monuseg"), load_builtin_split("dsb2018")
    assert (len(mon.train), len(mon.val), len(dsb.train), len(dsb.val)) == (24, 6, 570, 100)
    for s in (mon, dsb):
        assert not set(s.train) & set(s.val)
    seed, frac = mon.meta["seed"], mon.meta["fraction"]
    assert split_monuseg(mon.train + mon.val, fraction=frac, seed=seed) == (mon.train, mon.val)
    types_ = dsb.meta["types"]
    assert sorted(types_) == sorted(dsb.train + dsb.val)
    assert split_dsb(types_, fraction=dsb.meta["fraction"], seed=dsb.meta["seed"]) == (
        dsb.train, dsb.val,
    )  # fmt: skip
    assert set(BUILTIN_SPLITS) == {"monuseg", "dsb2018", "monuseg-organs", "bbbc039", "bitdepth"}
    organs = load_builtin_split("monuseg-organs")
    assert sorted(organs.train + organs.val) == sorted(mon.train + mon.val)
    assert split_monuseg_organs(organs.train + organs.val) == (organs.train, organs.val)
    held = {monuseg_organ(n) for n in organs.val}
    assert held == set(organs.meta["held_out_organs"])
    assert not held & {monuseg_organ(n) for n in organs.train}  # organs never seen
    with pytest.raises(ConfigError, match="unknown built-in split"):
        load_builtin_split("kaggle")


@pytest.mark.data
@pytest.mark.skipif(not MONUSEG.is_dir() or not DSB.is_dir(), reason="../shared/data is absent")
def test_builtin_splits_name_real_images() -> None:
    from sac.data import dsb_image_type, read_rgb

    mon = load_builtin_split("monuseg")
    assert sorted(mon.train + mon.val) == sorted(p.stem for p in (MONUSEG / "images").iterdir())
    dsb = load_builtin_split("dsb2018")
    assert sorted(dsb.train + dsb.val) == sorted(p.name for p in DSB.iterdir() if p.is_dir())
    for sid in dsb.val[:3]:
        image = read_rgb(DSB / sid / "images" / f"{sid}.png")
        assert dsb_image_type(image) == dsb.meta["types"][sid]
