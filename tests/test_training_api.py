"""``sac.train`` from Python and the few-shot schedule of ``sac train --from``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sac
from sac.cli import main
from sac.core.errors import ConfigError
from sac.model import load_model
from sac.training import run as run_module
from sac.training.run import FewShotRecipe, TrainOptions

from synthetic import write_disk_folder


class Stop(Exception):
    """Raised by a progress hook to cancel a run."""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny trained model from the Python API (6 images, 1 of them validating)."""
    data = write_disk_folder(tmp_path_factory.mktemp("disks") / "data")
    run = tmp_path_factory.mktemp("runs") / "start"
    seen: list[tuple[int, int]] = []
    result = sac.train(data, run, tiny=True, epochs=2, steps_per_epoch=3, lr=5e-3,
                       quiet=True, size_head=False, say=lambda m: None,
                       on_step=lambda step, total, loss: seen.append((step, total)))
    assert seen == [(i, 6) for i in range(1, 7)]  # every step reported, with the total
    assert result.model_dir == run / "model" and result.steps == 6 and result.skipped == []
    training = load_model(result.model_dir).config.training
    assert training["command"].startswith("sac.train(") and "init" not in training
    assert "threshold_tuning" in training  # tuned on the held-back image
    return result.model_dir


def test_python_api_refuses_unknown_options_and_fixed_settings(tiny_model: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option.*'epoch'"):
        sac.train(tmp_path, tmp_path / "r", epoch=3)
    with pytest.raises(ConfigError, match="--lora-rank"):
        sac.train(tmp_path, tmp_path / "r", init=tiny_model, lora_rank=8)
    assert not (tmp_path / "r").exists()


def test_few_shot_schedule_cancel_and_resume(tiny_model: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tuning a model on 3 images: the few-shot schedule (no validation image to hold
    back, no size head), cancelled from the progress hook, then resumed to the end."""
    recipe = FewShotRecipe(epochs=3, steps_per_epoch=4, warmup_steps=2)  # shorter, for speed
    monkeypatch.setattr(run_module, "FEW_SHOT", recipe)
    few = write_disk_folder(tmp_path / "few", n=3, seed=7)
    run = tmp_path / "run"
    messages: list[str] = []

    def cancel_at_6(step: int, total: int, loss: dict[str, float]) -> None:
        assert total == 12 and loss["total"] > 0
        if step == 6:
            raise Stop

    with pytest.raises(Stop):
        sac.train(few, run, init=tiny_model, quiet=True, say=messages.append,
                  on_step=cancel_at_6)
    assert any("few-shot" in m for m in messages)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]  # one epoch of 4 steps finished before step 6
    result = sac.train(few, run, init=tiny_model, quiet=True, resume=True, say=messages.append)
    assert result.steps == 12
    assert result.best_metric is None  # 3 images: all train, none validates
    model = load_model(result.model_dir)
    assert model.size_head is None and model.config.training["few_shot"] is True
    assert model.config.training["init"] == str(tiny_model)
    assert model.config.training["epochs_done"] == 3  # the last epoch kept
    assert model.config.auto_scale is False  # the scale of its images is its own
    assert "threshold_tuning" in model.config.training  # tuned though none was held back
    assert any(m.startswith("tuned on all the labelled images") for m in messages)
    tuned = model.config.training["threshold_tuning"]
    assert set(recipe.settings) <= set(tuned)  # the detection thresholds judged by SAM too


def test_cli_from_with_explicit_schedule(tiny_model: Path, tmp_path: Path) -> None:
    """``--from`` is ``--init``; an explicit schedule replaces the few-shot one."""
    few = write_disk_folder(tmp_path / "few", n=2, seed=9)
    run = tmp_path / "run"
    assert main(["train", "--data", str(few), "--format", "folder", "-o", str(run),
                 "--from", str(tiny_model), "--epochs", "1", "--steps-per-epoch", "2",
                 "--quiet"]) == 0
    training = load_model(run / "model").config.training
    assert training["few_shot"] is False and training["steps"] == 2
    assert load_model(run / "model").config.auto_scale is True
    assert training["command"].startswith("sac train --data")


def test_options_mirror_the_cli() -> None:
    """Every ``sac train`` option is a TrainOptions field of the same name, and back."""
    import argparse

    from sac.cli.train import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    dests = {a.dest for a in sub._actions} - {"help", "nproc"}
    fields = set(TrainOptions.__dataclass_fields__) - {"command"}
    assert dests == fields


@pytest.mark.parametrize("start_wins", [True, False])
def test_fine_tuning_hands_back_the_start_unless_an_epoch_beats_it(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        start_wins: bool) -> None:
    """Fine-tuning (with a schedule given: not the few-shot recipe) validates the starting
    model as epoch 0: when no epoch beats it on the held-back image, the model folder is the
    starting model, file for file; otherwise the best epoch is saved as usual."""
    from sac.training import trainer as trainer_module

    calls: list[int] = []

    def scripted(model, images, bf16):  # epoch 0 first, then the trained epochs
        calls.append(len(images))
        good = (len(calls) == 1) == start_wins
        return {"aji": 0.9 if good else 0.1, "pq": 0.5, "pixel_dice": 0.5}

    monkeypatch.setattr(trainer_module, "validate", scripted)
    few = write_disk_folder(tmp_path / "few", n=5, seed=3)
    messages: list[str] = []
    result = sac.train(few, tmp_path / "run", init=tiny_model, quiet=True, tune=False,
                       epochs=2, steps_per_epoch=2, say=messages.append)
    assert calls == [1, 1, 1]  # the start and two epochs, each on the one held-back image
    files = sorted(p.name for p in tiny_model.iterdir())
    if start_wins:
        assert result.best_epoch == 0 and result.best_metric == 0.9
        assert any("no epoch beat the starting model" in m for m in messages)
        assert sorted(p.name for p in result.model_dir.iterdir()) == files
        for name in files:
            assert (result.model_dir / name).read_bytes() == (tiny_model / name).read_bytes()
    else:
        assert result.best_epoch == 2 and result.best_metric == 0.9
        assert load_model(result.model_dir).config.training["init"] == str(tiny_model)
    assert not any(p.name.endswith((".restoring", ".replaced"))
                   for p in result.model_dir.parent.iterdir())


def test_few_shot_trains_on_every_image(tiny_model: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Five images under the few-shot recipe: none is held back (one image chooses epochs by
    noise), the last epoch is kept, and the model keeps its scale."""
    monkeypatch.setattr(run_module, "FEW_SHOT", FewShotRecipe(1, 2, 1))
    few = write_disk_folder(tmp_path / "few", n=5, seed=3)
    messages: list[str] = []
    result = sac.train(few, tmp_path / "run", init=tiny_model, quiet=True, tune=False,
                       say=messages.append)
    training = load_model(result.model_dir).config.training
    assert training["train_images"] == 5 and training["val_images"] == 0
    assert result.best_epoch == 1 and training["few_shot"] is True
    assert load_model(result.model_dir).config.auto_scale is False
    assert result.steps == 2 and not any("warning" in m for m in messages)


def test_few_shot_steps_scale_with_the_images_and_one_image_is_warned(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One labelled image: fewer steps (seen 200 times it is learnt by heart), and a warning
    that one or two images lowered the benchmark's AJI on other images."""
    monkeypatch.setattr(run_module, "FEW_SHOT", FewShotRecipe(2, 6, 1, steps_per_image=2))
    one = write_disk_folder(tmp_path / "one", n=1, seed=4)
    messages: list[str] = []
    result = sac.train(one, tmp_path / "run", init=tiny_model, quiet=True, tune=False,
                       say=messages.append)
    assert result.steps == 4  # 2 epochs of 2 steps for one image, not 2 of 6
    assert any("warning: fine-tuning on 1 labelled image(s)" in m for m in messages)
