"""Joint training: the tiny end-to-end run, resuming, prompt mixing, losses, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from sac.cli import main
from sac.core.errors import InputError
from sac.model import PromptConfig, Thresholds, create_model, load_model
from sac.pipeline.maps import Maps
from sac.pipeline.prompt_sets import positive_points, semantic_set
from sac.training.losses import dice_loss, generator_loss, mask_iou, mask_losses
from sac.training.sampler import TrainImage
from sac.training.step import match_targets
from sac.training.trainer import TrainConfig, Trainer

from synthetic import disk_labels, write_disk_folder


@pytest.fixture(scope="module")
def disk_folder(tmp_path_factory) -> Path:
    return write_disk_folder(tmp_path_factory.mktemp("disks") / "data")


def test_tiny_train_then_segment(disk_folder: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(disk_folder), "--format", "folder", "-o", str(run),
            "--tiny", "--epochs", "3", "--steps-per-epoch", "12", "--lr", "5e-3", "--quiet"]
    assert main(args) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_total"] < log[0]["train_total"]
    assert log[-1]["train_generator"] < log[0]["train_generator"]
    assert "val_aji" in log[0]  # 1 of the 6 images validates
    model = load_model(run / "model")
    assert model.config.training["train_images"] == 5
    assert model.config.training["command"].startswith("sac ")
    tuning = model.config.training["threshold_tuning"]  # chosen on the validation image
    assert tuning["score"] >= tuning["default_score"]
    assert (model.config.thresholds.fg, model.config.thresholds.centre) == (tuning["fg"],
                                                                            tuning["centre"])
    fill = tuning["fill"]  # the completion from the semantic mask, chosen the same way
    assert fill["score"] >= fill["default_score"]
    assert (model.config.thresholds.fill_new_area, model.config.thresholds.fill_attach) == (
        fill["fill_new_area"], fill["fill_attach"])
    # the run folder refuses a second start without --resume/--overwrite
    assert main(args) == 2
    out = tmp_path / "out"
    image = disk_folder / "images" / "im0.png"
    seg = ["segment", str(image), "-o", str(out), "--model", str(run / "model"),
           "--save-semantic", "--quiet"]
    assert main(seg) == 0
    labels = tifffile.imread(out / "im0_labels.tif")
    assert labels.shape == (128, 128) and labels.dtype == np.uint16
    sem = iio.imread(out / "im0_semantic.png")
    assert sem.shape == (128, 128) and set(np.unique(sem)) <= {0, 255}
    before = (out / "im0_labels.tif").stat().st_mtime_ns
    assert main(seg) == 2  # outputs exist: refused, untouched
    assert (out / "im0_labels.tif").stat().st_mtime_ns == before
    assert "already exists" in capsys.readouterr().err


def _images(folder: Path) -> list[TrainImage]:
    from sac.data import FolderDataset
    from sac.training.sampler import load_images

    return load_images(FolderDataset(folder), None, 1.0)[0]


def test_resume_reproduces_optimizer_and_scheduler(disk_folder: Path, tmp_path: Path) -> None:
    images = _images(disk_folder)
    cfg = TrainConfig(epochs=2, steps_per_epoch=3, checkpoint_every=2, warmup_steps=2)

    def trainer(out: Path) -> Trainer:
        torch.manual_seed(0)
        return Trainer(create_model(tiny=True), images[:4], [], out, cfg)

    straight = trainer(tmp_path / "a")
    straight.run(progress=False)
    broken = trainer(tmp_path / "b")

    def interrupted(step: int, losses: dict[str, float]) -> None:
        if step == 4:  # after the checkpoints at steps 2 and 3 (end of epoch 1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        broken.run(progress=False, on_step=interrupted)
    resumed = trainer(tmp_path / "b")
    resumed.run(resume=True, progress=False)
    assert resumed.step == straight.step == 6
    assert resumed.sched.state_dict() == straight.sched.state_dict()
    sa, sb = straight.opt.state_dict(), resumed.opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.allclose(v, sb["state"][k][name], atol=1e-6), (k, name)
    # Weights agree to float noise. (Attention key biases get gradients that are pure noise,
    # since softmax ignores a shift, and Adam scales noise up to full-size steps; hence 1e-3.)
    for k, v in straight.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-3), k
    logs = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in logs] == [1, 2]


def test_resume_mid_epoch_keeps_the_epochs_time_and_loss_sums(disk_folder: Path,
                                                               tmp_path: Path) -> None:
    """An epoch interrupted after a mid-epoch checkpoint reports, once resumed, the loss means
    of all its steps and the training time of both sessions, not only the resumed part."""
    images = _images(disk_folder)
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, checkpoint_every=2, warmup_steps=2,
                      batch_size=1)

    def trainer(out: Path) -> Trainer:
        torch.manual_seed(0)
        return Trainer(create_model(tiny=True), images[:4], [], out, cfg)

    straight = trainer(tmp_path / "a").run(progress=False).history[0]

    def interrupted(step: int, losses: dict[str, float]) -> None:
        if step == 3:  # one step after the checkpoint at step 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "b").run(progress=False, on_step=interrupted)
    state = torch.load(tmp_path / "b" / "last" / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["epoch"]["steps"] == 2
    before = state["epoch"]["seconds"]
    assert before > 0 and set(state["epoch"]["sums"]) == {k[6:] for k in straight
                                                          if k.startswith("train_")}
    resumed = trainer(tmp_path / "b")
    t0 = time.perf_counter()
    rec = resumed.run(resume=True, progress=False).history[0]
    after = time.perf_counter() - t0
    assert rec["step"] == 5
    assert before < rec["seconds"] <= before + after  # both sessions' time, nothing twice
    assert rec["crops_per_s"] == pytest.approx(5 / rec["seconds"], rel=0.01)
    for k in ("train_total", "train_mask_iou"):  # the mean over all 5 steps, as straight
        assert rec[k] == pytest.approx(straight[k], rel=1e-3, abs=1e-4), k
    training = load_model(tmp_path / "b" / "model").config.training
    assert training["train_seconds"] == pytest.approx(rec["seconds"], abs=0.1)
    # the epoch's end starts the next epoch's bookkeeping afresh in the saved state
    state = torch.load(tmp_path / "b" / "last" / "state.pt", weights_only=True)
    assert state["epoch"] == {"steps": 0, "seconds": 0.0, "sums": {}}


def test_train_bad_input(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "labels").mkdir()
    code = main(["train", "--data", str(empty), "--format", "folder", "-o",
                 str(tmp_path / "r"), "--tiny", "--quiet"])
    assert code == 2
    assert "empty" in capsys.readouterr().err
    # a label image of the wrong size is skipped with a message; training goes on
    data = write_disk_folder(tmp_path / "d", n=3, size=96)
    tifffile.imwrite(data / "labels" / "im1.tif", np.zeros((50, 50), np.uint16))
    code = main(["train", "--data", str(data), "--format", "folder", "-o",
                 str(tmp_path / "r2"), "--tiny", "--epochs", "1", "--steps-per-epoch", "2",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "im1" in err and (tmp_path / "r2" / "model" / "config.json").is_file()
    with pytest.raises(InputError, match="resume"):
        Trainer(create_model(tiny=True), _images(data), [], tmp_path / "r3",
                TrainConfig()).run(resume=True, progress=False)


def test_match_targets() -> None:
    gt = disk_labels((64, 64), [(20, 20, 8), (44, 44, 8)])
    det = np.zeros_like(gt)
    det[gt == 2] = 1  # covers nucleus 2
    det[15:25, 15:20] = 2  # mostly nucleus 1
    det[0:5, 50:60] = 3  # background: a false detection
    assert match_targets(det, gt).tolist() == [2, 1, 0]


def test_prompt_strategies_on_known_maps() -> None:
    labels = disk_labels((64, 64), [(20, 20, 8), (44, 44, 8)])
    centre = np.zeros((64, 64), np.float32)
    centre[17, 23] = 0.9  # off-centre peak inside nucleus 1
    centre[46, 40] = 0.8
    maps = Maps((labels > 0).astype(np.float32), np.zeros((64, 64), np.float32), centre)
    assert positive_points(labels, maps, "centroid").round().tolist() == [[20, 20], [44, 44]]
    assert positive_points(labels, maps, "probability").tolist() == [[23, 17], [40, 46]]
    s = semantic_set(labels, maps, PromptConfig(semantic_points=12), Thresholds())
    neg = s.points[s.labels == 0].astype(int)
    assert len(neg) and not (labels[neg[:, 1], neg[:, 0]] > 0).any()
    assert (s.labels == 1).sum() == 2


def test_losses() -> None:
    t = torch.zeros(2, 16, 16)
    t[:, 4:12, 4:12] = 1
    v = torch.ones_like(t)
    good, bad = (t * 20 - 10), -(t * 20 - 10)
    assert dice_loss(good, t, v).max() < 0.01 and dice_loss(bad, t, v).min() > 0.99
    assert mask_iou(good, t, v).tolist() == [1.0, 1.0]
    out = mask_losses(good, torch.ones(2), t, v)
    assert out["iou"] < 1e-6 and out["mask"] < 0.02
    # padding is ignored
    v2 = v.clone()
    v2[:, :, 8:] = 0
    half = good.clone()
    half[:, :, 8:] = -10
    assert mask_iou(half, t, v2).tolist() == [1.0, 1.0]
    g_t = torch.zeros(1, 3, 8, 8)
    assert generator_loss(torch.full((1, 3, 8, 8), -8.0), g_t, torch.ones(1, 8, 8)) < 0.05


def test_tune_command(disk_folder: Path, tmp_path: Path, capsys) -> None:
    from sac.data.splits import write_split
    from sac.model import save_model

    split = tmp_path / "split.json"
    write_split(split, ["im0", "im1", "im2", "im3"], ["im4", "im5"], {})
    save_model(create_model(tiny=True), tmp_path / "m")
    args = ["tune", "--model", str(tmp_path / "m"), "--data", str(disk_folder), "--format",
            "folder", "--split", str(split)]
    assert main([*args, "-o", str(tmp_path / "tuned")]) == 0
    assert "detection F1" in capsys.readouterr().out
    tuned = load_model(tmp_path / "tuned").config
    s = tuned.training["threshold_tuning"]
    assert (tuned.thresholds.fg, tuned.thresholds.fill_new_area) == (s["fg"],
                                                                      s["fill"]["fill_new_area"])
    assert tuned.thresholds.mask_logit == s["mask_logit"]["value"]
    assert tuned.thresholds.min_fg == s["min_fg"]["value"]
    assert not {"pipeline", "min_visible"} & set(s)  # not tuned unless asked for
    wide = ["--settings", "min_visible", "fg", "centre", "min_distance", "min_fg"]
    assert main([*args, "-o", str(tmp_path / "wide"), *wide]) == 0
    tuned = load_model(tmp_path / "wide").config
    s = tuned.training["threshold_tuning"]
    # the detection thresholds refined on the whole pipeline, each with its table; the
    # generator-level grid's choice kept beside them
    assert set(s["pipeline"]) == {"fg", "centre", "min_distance"}
    assert tuned.thresholds.min_visible == s["min_visible"]["value"]
    assert "mask_logit" not in s
    assert (tuned.thresholds.centre, tuned.thresholds.min_distance) == (s["centre"],
                                                                        s["min_distance"])
    assert isinstance(tuned.thresholds.min_distance, int)
    assert s["pipeline"]["min_distance"]["value"] == s["min_distance"]
    assert set(s["generator_choice"]) == {"fg", "centre", "min_distance"}
    assert s["min_fg"]["metric"] == s["fill"]["metric"] == "pixel_dice + aji"  # the default
    assert main([*args, "-o", str(tmp_path / "by_pq"), "--metric", "pq"]) == 0
    by_pq = load_model(tmp_path / "by_pq").config.training["threshold_tuning"]
    assert by_pq["mask_logit"]["metric"] == "pixel_dice + pq"
    assert main([*args, "--no-fill", "--no-mask"]) == 0  # in place, detection thresholds only
    again = load_model(tmp_path / "m").config.training["threshold_tuning"]
    assert not {"fill", "mask_logit", "min_fg"} & set(again)
    assert not {"pipeline", "generator_choice"} & set(again)
    capsys.readouterr()
    assert main([*args, "--no-mask", "--settings", "fg"]) != 0  # contradictory
    assert "--no-mask tunes no whole-pipeline settings" in capsys.readouterr().err
    assert main([*args, "--split", "nonexistent.json"]) != 0


def test_generator_stage_before_joint_training(disk_folder: Path, tmp_path: Path) -> None:
    from sac.training.generator_stage import GeneratorStageConfig

    images = _images(disk_folder)
    stage = GeneratorStageConfig(steps=30, batch_size=4, lr=5e-3, warmup_steps=5,
                                 log_every=10)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, generator_stage=stage)
    torch.manual_seed(0)
    trainer = Trainer(create_model(tiny=True), images[:4], [], tmp_path / "run", cfg)
    before = {k: v.clone() for k, v in trainer.model.generator.state_dict().items()}
    trainer.run(progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
           .splitlines()]
    stage_log = [r for r in log if r.get("stage") == "generator"]
    assert [r["step"] for r in stage_log] == [10, 20, 30]
    assert stage_log[-1]["loss"] < stage_log[0]["loss"]
    assert [r["epoch"] for r in log if "epoch" in r] == [1]
    assert any(not torch.equal(before[k], v)
               for k, v in trainer.model.generator.state_dict().items())
    training = load_model(tmp_path / "run" / "model").config.training
    assert training["generator_stage_steps"] == 30
    assert training["generator_stage_seconds"] > 0


def test_generator_stage_config_checked() -> None:
    from sac.core.errors import ConfigError
    from sac.training.generator_stage import GeneratorStageConfig, warmup_cosine

    with pytest.raises(ConfigError):
        GeneratorStageConfig(steps=-1)
    with pytest.raises(ConfigError):
        GeneratorStageConfig(lr=float("nan"))
    f = warmup_cosine(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.525) and f(110) == pytest.approx(0.05)


def test_train_cli_robust_augment_and_generator_stage(disk_folder: Path, tmp_path: Path
                                                      ) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(disk_folder), "--format", "folder", "-o", str(run),
            "--tiny", "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--no-tune",
            "--augment", "robust", "--generator-steps", "4", "--generator-batch", "2",
            "--centre-target", "distance"]
    assert main(args) == 0
    settings = json.loads((run / "train_config.json").read_text())["train"]
    assert settings["augment"]["jpeg_prob"] > 0 and settings["augment"]["invert_prob"] > 0
    assert settings["generator_stage"]["steps"] == 4
    training = load_model(run / "model").config.training
    assert training["generator_stage_steps"] == 4 and training["steps"] == 2
    assert load_model(run / "model").config.centre_target == "distance"
    cfg = load_model(run / "model").config  # the training data's nucleus size, recorded
    assert cfg.nucleus_diameter is not None and 10 <= cfg.nucleus_diameter <= 26
    assert cfg.nucleus_diameter_range[0] <= cfg.nucleus_diameter <= cfg.nucleus_diameter_range[1]
    head = cfg.size_head  # sac train fits the size head on the training images
    assert head is not None and head["train_images"] == 5 and head["train_views"] >= 10
    assert load_model(run / "model").size_head is not None
    run2 = tmp_path / "run2"
    assert main([*args[:6], str(run2), *args[7:], "--no-size-head"]) == 0
    assert load_model(run2 / "model").config.size_head is None


def test_train_and_segment_with_hv_maps(disk_folder: Path, tmp_path: Path) -> None:
    """A generator trained on horizontal/vertical maps: 4 output channels through the
    standalone and joint stages, tuning, the model folder and ``sac segment``."""
    run, out = tmp_path / "run", tmp_path / "out"
    assert main(["train", "--data", str(disk_folder), "--format", "folder", "-o", str(run),
                 "--tiny", "--epochs", "1", "--steps-per-epoch", "2", "--quiet",
                 "--generator-steps", "2", "--generator-batch", "2", "--no-size-head",
                 "--centre-target", "hv"]) == 0
    model = load_model(run / "model")
    assert model.config.centre_target == "hv" and model.generator.config.hv
    assert model.generator.head.out_channels == 4
    assert "threshold_tuning" in model.config.training
    image = disk_folder / "images" / "im0.png"
    assert main(["segment", str(image), "-o", str(out), "--model", str(run / "model"),
                 "--quiet"]) == 0
    assert tifffile.imread(out / "im0_labels.tif").shape == (128, 128)


def test_init_from_a_trained_model(disk_folder: Path, tmp_path: Path) -> None:
    """``sac train --init``: fine-tuning starts from a trained model's weights and settings;
    options that would change its architecture are refused; the stale size head goes."""
    from sac.model import load_for_training, save_model
    from sac.model.size_head import SizeHead, style_dim
    from sac.modeling import LoRAConfig
    from sac.training.size_fit import write_size_head

    torch.manual_seed(3)
    start = create_model(tiny=True, lora=LoRAConfig(2, 2.0), centre_target="distance",
                         input_scale=0.75, pixel_size_um=0.5, parts=("lora", "generator"))
    with torch.no_grad():  # trained-looking weights: none equal a fresh model's
        for part in ("lora", "generator"):
            for t in start.part_state(part).values():
                t.add_(torch.randn_like(t) * 0.01)
    folder = save_model(start, tmp_path / "start")
    dim = style_dim(start.config.generator_widths)
    write_size_head(folder, SizeHead(np.zeros(dim), np.ones(dim), np.zeros(dim), 2.3),
                    {"penalty": 1.0})
    assert load_model(folder).size_head is not None
    model = load_for_training(folder, ("mask_decoder", "generator"), nucleus_diameter=12.0)
    assert model.training and model.size_head is None and model.config.size_head is None
    assert model.config.parts == ("lora", "mask_decoder", "generator")  # its own kept
    assert model.config.nucleus_diameter == 12.0 and model.config.lora_rank == 2
    for part in ("lora", "generator"):
        for key, t in start.part_state(part).items():
            assert torch.equal(model.part_state(part)[key], t.to(torch.float32)), key

    run = tmp_path / "run"
    args = ["train", "--data", str(disk_folder), "--format", "folder", "-o", str(run),
            "--init", str(folder), "--epochs", "1", "--steps-per-epoch", "2", "--quiet",
            "--no-tune", "--no-size-head"]
    assert main(args) == 0
    cfg = load_model(run / "model").config
    assert cfg.lora_rank == 2 and cfg.centre_target == "distance"
    assert cfg.input_scale == 0.75 and cfg.pixel_size_um == 0.5  # kept: same input scale
    assert cfg.training["init"] == str(folder)
    assert cfg.parts == ("lora", "mask_decoder", "generator")
    for bad in (["--lora-rank", "8"], ["--centre-t", "hv"], ["--tiny"]):  # abbreviated too
        assert main([*args[:6], str(tmp_path / "r2"), *args[7:], *bad]) == 4
    assert not (tmp_path / "r2").exists()


def test_fill_tuned_on_full_resolution(disk_folder: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """For a model working at half resolution, the completion is scored on what ``sac
    segment`` returns for the images as they are, not on their half-resolution copies."""
    import sac.pipeline.evidence as evidence

    # the random tiny SAM's masks lie partly off the disks and do not stand out from their
    # rings as nuclei do: the polarity check would drop them all, and nothing would be scored
    monkeypatch.setattr(evidence, "MIN_DARKER", -np.inf)
    monkeypatch.setattr(evidence, "MIN_BRIGHTER", -np.inf)
    from sac.data.open import open_dataset
    from sac.metrics import aggregate, evaluate_pair
    from sac.pipeline.segmenter import Segmenter
    from sac.training.sampler import load_images
    from sac.training.tune import tune_fill

    from oracle import OracleGenerator

    torch.manual_seed(0)
    # the oracle finds the disks; with a negative point beside each positive, this random tiny
    # SAM returns masks on them (from the positive alone its masks here score AJI 0)
    model = create_model(tiny=True, input_scale=0.5, thresholds=Thresholds(min_score=0.0),
                         prompts=PromptConfig(neighbour_negatives=2,
                                              background_negatives=1)).eval()
    model.generator = OracleGenerator()
    dataset = open_dataset(disk_folder, "folder")
    names = ["im4", "im5"]
    small, _ = load_images(dataset, names, 0.5)
    full, _ = load_images(dataset, names, 1.0)
    result = tune_fill(model, small, full=full)
    off = next(r for r in result.table if (r["fill_new_area"], r["fill_attach"]) == (0, False))
    seg = Segmenter(model, thresholds=model.config.thresholds.without_fill())
    rows = [evaluate_pair(im.labels, seg.segment(im.rgb, im.name).labels) for im in full]
    assert full[0].labels.shape == (128, 128) and small[0].labels.shape == (64, 64)
    assert off["aji"] == pytest.approx(float(aggregate(rows)["aji"])) and off["aji"] > 0
    assert off["pixel_dice"] == pytest.approx(float(aggregate(rows)["pixel_dice"]))


def test_validation_weighs_sources_equally(disk_folder: Path) -> None:
    """A generalist's checkpoint is chosen by the mean over its datasets, so the one with
    more validation images does not decide alone."""
    from dataclasses import replace

    from sac.data.open import open_dataset
    from sac.training.sampler import load_images
    from sac.training.validation import validate

    from oracle import OracleGenerator

    torch.manual_seed(0)
    model = create_model(tiny=True, thresholds=Thresholds(min_score=0.0)).eval()
    model.generator = OracleGenerator()
    images, _ = load_images(open_dataset(disk_folder, "folder"), ["im0", "im1", "im2"], 1.0)
    a, b = [replace(images[0], source="a")], [replace(im, source="b") for im in images[1:]]
    each = [validate(model, part, bf16=False) for part in (a, b)]
    both = validate(model, a + b, bf16=False)
    plain = validate(model, [replace(im, source="") for im in a + b], bf16=False)
    for key in ("pixel_dice", "aji", "pq"):
        assert both[key] == pytest.approx((each[0][key] + each[1][key]) / 2)
        assert plain[key] == pytest.approx((each[0][key] + 2 * each[1][key]) / 3)
    assert each[0]["aji"] != pytest.approx(each[1]["aji"])  # the two weightings differ here
    for key in ("aji", "pixel_dice", "dsb_score"):  # and each source's own score is logged
        assert both[f"{key}@a"] == pytest.approx(each[0][key])
        assert both[f"{key}@b"] == pytest.approx(each[1][key])
    assert not any("@" in k for k in each[0]) and not any("@" in k for k in plain)
