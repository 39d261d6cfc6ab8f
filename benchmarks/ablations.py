"""The paper's ablations on the MoNuSeg validation split, two ways.

``--mode inference`` (cheap): one trained model, prompt settings changed at inference only —
centroid- vs probability-based positives, the number of prompts in the semantic prompt set,
negatives on or off, and the prompt type (points, boxes, points+boxes).

``--mode train`` (costly, the real ablation): a short ``sac train`` run per setting with the
same budget (``--steps``), each evaluated on the validation images: LoRA rank 0/4/8,
centroid vs probability, prompt type, no negatives, robust augmentation, SAM at
scale 1.0 (``scale_1``, issue 11 item 1). Each run tunes only its detection
thresholds (``--no-fill``), so variants differ in the ablated setting alone. Runs go to
``--runs``; a finished run is reused, so the script can be stopped and continued, and a run
already in the results file (same variant, seed and steps) is not trained again, so a study
can span sessions whose machines are not kept (commit the results file after each run).
``--seeds N`` trains each variant N times (seeds 0..N-1) and adds a mean +- half-range row
per variant, for settings that differ by less than the seed-to-seed spread, e.g. the
paper's negatives claim: ``--only lora_rank_4 no_negatives --seeds 3 --tag negatives``.
``--split monuseg-organs`` trains and scores on the leave-organs-out split instead (bladder,
colon, liver and stomach never seen in training), e.g. to ask whether ``--augment robust``
carries better to new tissue: ``--split monuseg-organs --only lora_rank_4 augment_robust
--tag organs`` (one split per results file: give each its own ``--tag``).

Writes ``results/ablations/ablations_<mode>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sac.cli.common import add_precision
from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.model import SACModel, load_model
from sac.pipeline.segmenter import Segmenter

from bench_common import RESULTS, bf16_of, machine_info, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "monuseg" / "train"
KEYS = ["pixel_dice", "aji", "pq", "f1_obj", "semantic_pixel_dice"]
#: every training variant's prompts unless it sets its own: the studies in results/ began when
#: ``sac train`` put 2 neighbour + 1 background negatives in each instance set (the default
#: until the negatives study below settled it), and later rows must stay comparable with
#: theirs, so "lora_rank_4 (default)" names that old default, not today's
STUDY_PROMPTS = ["--neighbour-negatives", "2", "--background-negatives", "1"]
TRAIN_VARIANTS: dict[str, list[str]] = {
    "lora_rank_4 (default)": [],
    "lora_rank_0": ["--lora-rank", "0"],
    "no_negatives": ["--neighbour-negatives", "0", "--background-negatives", "0"],
    "probability_prompts": ["--prompt-strategy", "probability"],
    "lora_rank_8": ["--lora-rank", "8"],
    "boxes": ["--prompt-mode", "boxes"],
    "points+boxes": ["--prompt-mode", "points+boxes"],
    "augment_robust": ["--augment", "robust"],
    "scale_1": ["--scale", "1.0"],  # SAM at the data's 0.25 um/px (overrides the 0.5 below)
}
SPLITS = ("monuseg", "monuseg-organs")


def evaluate(model: SACModel, names: list[str], dataset: Any, bf16: bool) -> dict[str, float]:
    seg = Segmenter(model, precision="bf16" if bf16 else "fp32")
    rows, sem = [], []
    for name in names:
        s = dataset[name]
        res = seg.segment(s.image, name, semantic=True)
        rows.append(evaluate_pair(s.labels, res.labels))
        sem.append(evaluate_pair(s.labels, res.semantic.astype("uint32")))
    out = {k: float(v) for k, v in aggregate(rows).items()}
    out["semantic_pixel_dice"] = float(aggregate(sem)["pixel_dice"])
    return out


def with_prompts(model: SACModel, **changes: Any) -> SACModel:
    cfg = model.config
    model.config = dataclasses.replace(cfg, prompts=dataclasses.replace(cfg.prompts, **changes))
    return model


def inference_rows(model_path: str, names: list[str], dataset: Any, bf16: bool
                   ) -> list[dict[str, Any]]:
    variants: list[tuple[str, dict[str, Any]]] = [
        ("as trained", {}),
        ("probability positives", {"strategy": "probability"}),
        ("centroid positives", {"strategy": "centroid"}),
        ("semantic prompts 8", {"semantic_points": 8}),
        ("semantic prompts 32", {"semantic_points": 32}),
        ("semantic prompts 128", {"semantic_points": 128}),
        ("no negatives", {"neighbour_negatives": 0, "background_negatives": 0}),
        ("1 neighbour + 0 background negatives", {"neighbour_negatives": 1,
                                                  "background_negatives": 0}),
        ("4 neighbour + 2 background negatives", {"neighbour_negatives": 4,
                                                  "background_negatives": 2}),
        ("boxes", {"mode": "boxes"}),
        ("points+boxes", {"mode": "points+boxes"}),
    ]
    rows = []
    for name, changes in variants:
        t0 = time.perf_counter()
        m = evaluate(with_prompts(load_model(model_path), **changes), names, dataset, bf16)
        rows.append({"variant": name, **{k: round(m[k], 4) for k in KEYS},
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    return rows


def train_rows(runs: Path, steps: int, names: list[str], dataset: Any, bf16: bool,
               only: list[str] | None, seeds: int, recorded: list[dict[str, Any]],
               save: Callable[[list[dict[str, Any]]], None], commit: str,
               split: str = "monuseg") -> list[dict[str, Any]]:
    """One row per variant and seed, seed by seed (seed 0 of every variant first, so that a
    study cut short still compares variants at equal seeds); with several seeds, then one row
    per variant with the mean and half the range over its seeds.

    A (variant, seed, steps) already in ``recorded`` (the rows of an earlier run of the same
    study) is reused, not trained again: at 960 steps each run takes 50-90 min on 2 cores
    (depending on the CPU), so a study of several seeds spans sessions whose machines, and
    run folders, are not kept. ``save`` is called with the rows after every new run; recorded
    rows outside this run's variants, seeds and steps stay in what it saves and returns.
    ``commit`` (the code this process runs, read at its start) is recorded with each new row.
    ``split`` is the built-in split the runs train on (``names`` must be its validation images)."""
    from sac.cli import main as sac

    variants = [(name, extra) for name, extra in TRAIN_VARIANTS.items()
                if not only or name.split(" ")[0] in only]
    done = {(r["variant"], r["seed"], r["steps"]): r for r in recorded
            if isinstance(r.get("seed"), int)}
    planned = {(name, seed, steps) for seed in range(seeds) for name, _ in variants}
    others = [r for key, r in done.items() if key not in planned]  # kept in the file
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        for name, extra in variants:
            if (name, seed, steps) in done:
                rows.append(done[(name, seed, steps)])
                print(f"{name}, seed {seed}: recorded at {rows[-1].get('commit', '?')}",
                      flush=True)
                continue
            key = name.split(" ")[0]
            out = runs / (key if seed == 0 else f"{key}-seed{seed}")
            if not (out / "done").is_file():
                args = ["train", "--data", str(DATA), "--format", "monuseg", "--split",
                        split, "-o", str(out), "--scale", "0.5", "--pixel-size", "0.25",
                        "--epochs", "1", "--steps-per-epoch", str(steps), "--quiet",
                        "--val-limit", "1", "--no-fill", "--seed", str(seed),
                        *(["--bf16"] if bf16 else []), *STUDY_PROMPTS, *extra]
                # a run cut before its first checkpoint left only its config: start it again
                again = (["--resume"] if (out / "last" / "state.pt").is_file()
                         else ["--overwrite"] if out.is_dir() else [])
                code = sac(args + again)
                if code not in (0, 1):
                    raise SystemExit(f"training {name} (seed {seed}) failed with exit code "
                                     f"{code}")
                (out / "done").write_text("ok\n")
            model = load_model(out / "model")
            m = evaluate(model, names, dataset, bf16)
            train_s = model.config.training.get("train_seconds")
            rows.append({"variant": name, "seed": seed, "steps": steps,
                         **{k: round(m[k], 4) for k in KEYS},
                         "train_min": round(train_s / 60, 1) if train_s else "",
                         "commit": commit,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
            print(rows[-1], flush=True)
            save(rows + others)
    summary = []
    if seeds > 1:
        for name, _ in variants:
            mine = [r for r in rows if r["variant"] == name]
            summary.append({"variant": f"{name}: mean of {len(mine)} seeds", "seed": "all",
                            "steps": steps, **{k: mean_spread([r[k] for r in mine])
                                               for k in KEYS}})
    return rows + others + summary


def mean_spread(values: list[float]) -> str:
    """``mean +- half the range`` of a few runs, as text for the table."""
    mid = sum(values) / len(values)
    return f"{mid:.4f} +- {(max(values) - min(values)) / 2:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("inference", "train"), required=True)
    p.add_argument("--model", help="trained model for --mode inference")
    p.add_argument("--runs", type=Path, default=Path("ablation_runs"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--only", nargs="*", default=None, help="train variants to run")
    p.add_argument("--limit", type=int, default=None, help="validation images")
    add_precision(p)
    p.add_argument("--seeds", type=int, default=1,
                   help="train runs per variant, seeds 0..N-1 (seed 0 reuses the old folder)")
    p.add_argument("--tag", default="", help="suffix of the results' file name")
    p.add_argument("--split", choices=SPLITS, default="monuseg",
                   help="built-in split to train on and score (default: monuseg)")
    args = p.parse_args()
    dataset = open_dataset(DATA, "monuseg")
    names = load_builtin_split(args.split).val[: args.limit]
    info = machine_info()
    name = f"ablations_{args.mode}" + (f"_{args.tag}" if args.tag else "")
    previous = RESULTS / f"{name}.json"
    recorded = json.loads(previous.read_text()) if previous.is_file() else None
    if recorded is not None:  # files from before --split existed hold monuseg runs
        recorded_split = recorded["machine"].get("split", "monuseg")
        if recorded_split != args.split:
            raise SystemExit(f"{previous} holds runs on split {recorded_split!r}, not "
                             f"{args.split!r}: give this study its own --tag")
    info.update(mode=args.mode, model=args.model or "", images=len(names), bf16=bf16_of(args),
                split=args.split,
                note="pixel_dice: mean over images; semantic_pixel_dice: the one-set-per-"
                     "tile semantic mask; commit and date per row: where that run was "
                     "trained and scored")
    title = f"Ablations on the {args.split} validation split ({args.mode})"
    if args.mode == "inference":
        if not args.model:
            raise SystemExit("--mode inference needs --model")
        rows = inference_rows(args.model, names, dataset, bf16_of(args))
        cols = ["variant", *KEYS, "seconds"]
    else:
        cols = ["variant", "seed", "steps", *KEYS, "train_min", "commit"]
        rows = train_rows(args.runs, args.steps, names, dataset, bf16_of(args), args.only,
                          args.seeds, recorded["rows"] if recorded else [],
                          lambda done: write_results(name, info, done, cols, title),
                          str(info["commit"]), args.split)
    _, md = write_results(name, info, rows, cols, title)
    print(md.read_text())


if __name__ == "__main__":
    main()
