"""Copy a trained model folder into the package as a shipped model, with its model card.

Usage: ``.venv/bin/python scripts/ship_model.py RUN_DIR/model NAME --data-license "..."``.
The card is written from the model's own config.json (training command, data, wall time,
validation metrics, base-weight sha256), so it cannot drift from the weights it describes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from sac.model import load_model, read_config
from sac.pipeline.size import DOWNSCALE_ABOVE, UPSCALE_BELOW

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "sac" / "model" / "pretrained"
MAX_BYTES = 15_000_000
METRICS = ("pixel_dice", "pixel_dice_sum", "aji", "pq", "f1_obj", "dsb_score", "n_images")


def card(name: str, folder: Path, data_license: str, notes: str) -> str:
    """The markdown model card of a model folder."""
    cfg = read_config(folder)
    tr = cfg.training
    val = tr.get("validation", {})
    size = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors")
    lines = [
        f"# {name}", "",
        notes, "",
        "## Model", "",
        f"- base: `{cfg.backbone}` weights, sha256 `{cfg.base.sha256}` ({cfg.base.name}, "
        f"{cfg.base.source}); loading refuses other base weights",
        f"- trained parts: {', '.join(cfg.parts)}; LoRA rank {cfg.lora_rank} (alpha "
        f"{cfg.lora_alpha}) on the query/value projections of "
        f"{'every attention block' if cfg.lora_blocks is None else cfg.lora_blocks}",
        f"- prompts: {cfg.prompts.mode}, {cfg.prompts.strategy}-based positives, "
        + (f"{cfg.prompts.neighbour_negatives} neighbour + "
           f"{cfg.prompts.background_negatives} background negatives per nucleus"
           if cfg.prompts.neighbour_negatives or cfg.prompts.background_negatives
           else "no negatives (one positive point per nucleus)"),
        f"- input scale {cfg.input_scale} (images at the training data's magnification are "
        f"resampled by this factor)"
        + (f"; {cfg.pixel_size_um} um per pixel at the model input" if cfg.pixel_size_um
           else ""),
        ("- nucleus size: " + (
            f"median diameter {cfg.nucleus_diameter:.1f} px at the model input (5th-95th "
            f"percentile per training image {cfg.nucleus_diameter_range[0]:.1f}-"
            f"{cfg.nucleus_diameter_range[1]:.1f} px, the statistic of `sac.pipeline.size`); "
            "when no scale is given, images whose estimated nuclei are over "
            f"{DOWNSCALE_ABOVE}x larger or {UPSCALE_BELOW}x smaller than "
            f"{cfg.nucleus_diameter:.0f} px, or smaller than "
            f"{cfg.nucleus_diameter_range[0]:.1f} px, are resampled to "
            f"{cfg.nucleus_diameter:.0f} px"
            if cfg.nucleus_diameter and cfg.nucleus_diameter_range
            else "not recorded (no automatic scale)")),
        ("- size head (`size_head.safetensors`, `sac.model.size_head`): " + (
            f"ridge regression of the log nucleus diameter on the generator's style vector, "
            f"fitted on {cfg.size_head['train_views']} views of "
            f"{cfg.size_head['train_images']} training images at 0.25-4x; on "
            f"{cfg.size_head.get('val_views', 0)} views of the validation images "
            f"{_head_val(cfg.size_head)}"
            if cfg.size_head else "none (the foreground map alone estimates the size)")),
        f"- stored as {cfg.dtype}, {size / 1e6:.1f} MB", "",
        "## Training", "",
        f"- data: {_joined(tr.get('data', '?'))} ({_joined(tr.get('format', '?'))}), split "
        f"`{_joined(tr.get('split'))}`: "
        f"{tr.get('train_images', '?')} training images, {tr.get('val_images', '?')} "
        "validation images (the checkpoint was chosen on these only)",
        f"- data licence: {data_license}",
        f"- command: `{tr.get('command', '?')}`",
        f"- {tr.get('steps', '?')} steps ({tr.get('epochs_done', '?')} epochs), "
        f"{tr.get('train_seconds', 0) / 60:.0f} min training + "
        f"{tr.get('validation_seconds', 0) / 60:.0f} min validation, "
        f"{tr.get('crops_per_s', '?')} crops/s (the machine of the benchmarks: 2-core CPU)",
    ]
    if tr.get("generator_stage_steps"):
        lines.append(
            f"- before the joint stage the prompt generator trained alone for "
            f"{tr['generator_stage_steps']} steps "
            f"({tr.get('generator_stage_seconds', 0) / 60:.0f} min, `--generator-steps`)")
    gen = tr.get("generator_replaced")
    if gen:
        lines.append(
            f"- prompt generator replaced afterwards (SAM's LoRA and decoder as trained "
            f"above): a fresh generator (centre target {gen['centre_target']}, widths "
            f"{gen['widths']}, seed {gen['seed']}) trained alone for {gen['steps']} steps in "
            f"{gen['train_seconds'] / 60:.0f} min by `{gen['script']}` at {gen['commit']} "
            f"(`{' '.join(gen.get('argv', []))}`); its detection thresholds chosen on the "
            "validation images")
    tune = tr.get("threshold_tuning")
    if tune:
        det = tune.get("generator_choice", tune)
        lines.append(
            f"- detection thresholds chosen afterwards on the validation images (sac tune): "
            f"fg {det['fg']}, centre {det['centre']}, min_distance {det['min_distance']} "
            f"(detection F1 {tune['default_score']:.3f} -> {tune['score']:.3f})")
        for name, r in tune.get("pipeline", {}).items():
            lines.append(
                f"- {name} then chosen again on the whole pipeline (SAM's masks from those "
                f"prompts): {r['value']} ({r['metric']} {r['default_score']:.3f} -> "
                f"{r['score']:.3f})")
        what = {"mask_logit": "SAM's mask logit threshold (SAM's own: 0)",
                "min_fg": ("the upper quartile of the generator's foreground under a mask below "
                           "which the mask is dropped"),
                "min_visible": ("the share of a mask that must stay free of better-scoring "
                                "masks, else it is dropped as a duplicate")}
        for name, words in what.items():
            r = tune.get(name)
            if r:
                lines.append(
                    f"- {words} chosen the same way on the whole pipeline: {r['value']} "
                    f"({r['metric']} {r['default_score']:.3f} -> {r['score']:.3f})")
        fill = tune.get("fill")
        if fill:
            lines.append(
                f"- completion from the semantic mask chosen the same way: new nuclei of at "
                f"least {fill['fill_new_area']} px (0 = off), attach rims "
                f"{fill['fill_attach']} ({fill.get('metric', 'pixel_dice + aji')} "
                f"{fill['default_score']:.3f} -> "
                f"{fill['score']:.3f})")
    lines += [
        "",
        f"## Validation metrics at checkpoint selection (by {tr.get('select_metric', '?')}; "
        + ("of the jointly trained model, before its generator was replaced; "
           if gen else "") + "before threshold tuning)", "",
        "| metric | value |", "|---|---|",
    ]
    lines += [f"| {k} | {val[k]:.4f} |" for k in METRICS if k in val]
    lines += ["", "pixel_dice: mean over images; pixel_dice_sum: from summed pixel counts. "
              "Benchmarks against baselines: `benchmarks/results/`."]
    return "\n".join(lines) + "\n"


def _joined(value: object) -> str:
    """A training-record entry, lists (several datasets) joined with ``+``."""
    return " + ".join(map(str, value)) if isinstance(value, list) else str(value)


def _head_val(record: dict) -> str:
    """The size head's validation errors, in words."""
    v = record.get("val")
    if not v:
        return "(no validation images)"
    return (f"{100 * v['within_1.5x']:.0f} % within 1.5x of the true median diameter "
            f"(median error {100 * (math.exp(v['median_abs_log_error']) - 1):.0f} %)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("name")
    p.add_argument("--data-license", required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args()
    load_model(args.model)  # validates everything, including the base weights
    dest = PRETRAINED / args.name
    if dest.exists() and not args.overwrite:
        raise SystemExit(f"{dest} exists; pass --overwrite")
    tmp = dest.with_name(f".{args.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in args.model.iterdir():
        if f.name == "config.json" or f.suffix == ".safetensors":
            shutil.copyfile(f, tmp / f.name)
    cfg = json.loads((tmp / "config.json").read_text())
    if cfg["base"]["source"] == "included":
        raise SystemExit("models with included base weights are not shipped")
    total = sum(f.stat().st_size for f in tmp.iterdir())
    if total > MAX_BYTES:
        raise SystemExit(f"{total / 1e6:.1f} MB is over the 15 MB limit")
    (tmp / "MODEL_CARD.md").write_text(card(args.name, tmp, args.data_license, args.notes))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    print(f"shipped {dest} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

