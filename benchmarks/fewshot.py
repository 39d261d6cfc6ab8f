"""Few-shot adaptation: how much a new target gains from 1, 2, 5 or 10 labelled images.

The target is a set no shipped model trained on: ``bitdepth`` (DAPI tissue sections; the
pool is the built-in split's training tissues, the evaluation its held-out tissue, kidney: a
cross-tissue test), or ``bitdepth-40x`` (one lab's setting: the 40x images of all five
tissues, air and oil objectives, every other image of each tissue and objective in the pool
and the rest evaluated, so shots and evaluation come from the same kind of images).
(A MoNuSeg organ would need an H&E model trained without it; none is shipped.) For each
number of shots and each of ``--draws``
random draws from the pool, every ``--method`` trains on the same images:

- ``sac-from:MODEL``: ``sac.train(init=MODEL)``, the few-shot schedule of ``sac train --from``;
- ``sac-base``: SAC from LiteMedSAM alone (fresh LoRA, decoder and generator) with the same
  number of steps;
- ``unadapted:MODEL``: the model as shipped (scored once, shots 0);
- ``stardist`` / ``cellpose``: the peers' scripts (``benchmarks/peers/``) in their own
  environments (``--peer-envs``), from scratch, with the wall time the ``sac-from`` run of the
  same draw took; they validate on the training images themselves (there are no others).

Each is scored on the evaluation images (AJI, PQ, object F1, pixel Dice) with the wall time it
trained; with ``--clicks N``, each SAC model is also corrected click by click on each
evaluation image (``clicks.py``'s simulated user) to say how many clicks reach an AJI.
Runs go to ``--runs`` (outside the repository) and are skipped when finished, their scores
kept beside them, so an interrupted benchmark continues where it stopped.

Run: ``.venv/bin/python benchmarks/fewshot.py --target bitdepth --shots 1 2 5 10 --draws 3``.
Writes ``results/fewshot/fewshot_<target>[_<tag>].{json,md}``. ``--summarise FILE.json ...
--tag T`` writes the means over draws of such files and their plot,
``fewshot_<target>_<T>.{json,md,png}`` (matplotlib: ``pip install 'segment-any-cell[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from sac.core.device import resolve_device, use_bf16
from sac.data.open import open_dataset
from sac.data.splits import load_builtin_split
from sac.metrics import aggregate, evaluate_pair
from sac.pipeline.interactive import EMBEDDINGS, Corrector
from sac.pipeline.segmenter import load_segmenter

from bench_common import DATA, RESULTS, machine_info, write_results
from clicks import POLICY, click_curve

KEYS = ("aji", "pq", "f1_obj", "pixel_dice")
DEFAULT_METHODS = ("sac-from:sac-lite-nuclei", "unadapted:sac-lite-nuclei", "sac-base",
                   "stardist", "cellpose")


def target_sets(target: str) -> tuple[Any, list[str], list[str], bool]:
    """The dataset, its pool of training images, its evaluation images, and whether it is
    fluorescence (grey input for the peers)."""
    if target == "bitdepth":
        split = load_builtin_split("bitdepth")
        return (open_dataset(DATA / "bitdepth_nucseg", "folder"), list(split.train),
                list(split.val), True)
    if target == "bitdepth-40x":
        ds = open_dataset(DATA / "bitdepth_nucseg", "folder")
        names = sorted(n for n in ds.names if "_40x_" in n)
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(n.rsplit("_", 1)[0], []).append(n)
        pool = [n for g in groups.values() for n in g[::2]]
        return ds, pool, [n for g in groups.values() for n in g[1::2]], True
    raise SystemExit(f"unknown --target {target!r} (bitdepth, bitdepth-40x)")


def write_pairs(ds: Any, names: list[str], folder: Path) -> Path:
    """``folder/images`` and ``folder/labels`` TIFFs of ``names`` (once)."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for n in names:
        if not (folder / "labels" / f"{n}.tif").exists():
            sample = ds[n]
            tifffile.imwrite(folder / "images" / f"{n}.tif", sample.image)
            tifffile.imwrite(folder / "labels" / f"{n}.tif", sample.labels.astype(np.uint32))
    return folder


def score_model(model: str, ds: Any, names: list[str], precision: str, clicks: tuple[int, float],
                cache: Path) -> dict[str, Any]:
    """AJI, PQ, object F1 and pixel Dice of ``model`` on ``names`` (per-image means) and, for
    ``clicks = (n, target)`` with n > 0, the mean AJI after 5, 10 and n corrective clicks per
    image (``benchmarks/clicks.py``'s simulated user) and the clicks per image after which the
    mean reaches ``target``. Kept in ``cache`` (a JSON file in the run's folder), so a
    resumed benchmark does not score a finished run again."""
    key = {"names": names, "clicks": list(clicks), "precision": precision,
           "policy": POLICY if clicks[0] else None}
    kept = json.loads(cache.read_text()) if cache.is_file() else {}
    if kept.get("key") == key:
        return dict(kept["scores"])
    seg = load_segmenter(model, precision=precision)
    per, curves = [], []
    for n in names:
        sample = ds[n]  # read once: its labels and its image
        result = seg.segment(sample.image, n)
        per.append(evaluate_pair(sample.labels, result.labels))
        if clicks[0]:
            EMBEDDINGS.clear()
            cor = Corrector(seg, sample.image, result.labels, result.size.scale)
            curves.append(click_curve(cor, sample.labels, clicks[0]))
    scores: dict[str, Any] = {k: round(v, 4) for k, v in aggregate(per).items() if k in KEYS}
    if curves:
        mean = np.mean(curves, axis=0)
        for c in sorted({5, 10, clicks[0]}):
            if c <= clicks[0]:
                scores[f"aji_{c}clicks"] = round(float(mean[c]), 4)
        reached = np.flatnonzero(mean >= clicks[1])
        scores["clicks_to_target"] = int(reached[0]) if reached.size else f">{clicks[0]}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "scores": scores}))
    return scores


def score_folder(folder: Path, ds: Any, names: list[str]) -> dict[str, float]:
    per = [evaluate_pair(ds[n].labels, tifffile.imread(folder / f"{n}_labels.tif"))
           for n in names]
    return {k: round(v, 4) for k, v in aggregate(per).items() if k in KEYS}


def run_sac(method: str, data: Path, run: Path, precision: str) -> tuple[Path, float]:
    """Train (or find the finished run of) a SAC method; the model folder and minutes."""
    from sac.training import run as training
    from sac.training.run import train

    done = run / "done.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        return Path(rec["model"]), rec["minutes"]
    if run.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(run)
    t0 = time.perf_counter()
    if method.startswith("sac-from:"):
        result = train(data, run, init=method.split(":", 1)[1], precision=precision,
                       quiet=True, say=lambda m: None)
    else:  # from the base SAM: the same number of steps as the few-shot schedule
        recipe = training.FEW_SHOT
        result = train(data, run, epochs=recipe.epochs, steps_per_epoch=recipe.steps_per_epoch,
                       precision=precision, quiet=True, say=lambda m: None, size_head=False)
    minutes = (time.perf_counter() - t0) / 60
    done.write_text(json.dumps({"model": str(result.model_dir), "minutes": minutes}))
    return result.model_dir, minutes


def run_peer(tool: str, data: Path, run: Path, evaluation: Path, minutes: float, grey: bool,
             envs: Path) -> Path | str:
    """Train a peer on ``data`` within ``minutes`` and predict ``evaluation``; the folder of
    its predictions, or why it did not run."""
    python = envs / tool / "bin" / "python"
    if not python.is_file():
        return f"not run: no {tool} environment at {envs / tool} (benchmarks/peers/setup.sh)"
    script = Path(__file__).parent / "peers" / f"{tool}_run.py"
    out = run / "eval_predictions"
    channels = ["--grey"] if grey and tool == "stardist" else []  # cellpose reads grey always
    if not (run / "run.json").is_file():
        cmd = [str(python), str(script), "--data", str(data), "--run", str(run),
               "--minutes", f"{minutes:.2f}", *channels]
        if subprocess.run(cmd, check=False).returncode:
            return f"{tool} training failed: see {run}/run.json"
    if not out.is_dir():  # prediction reads the images as the training did
        cmd = [str(python), str(script), "--run", str(run), "--predict",
               str(evaluation / "images"), "--out", str(out), *channels]
        if subprocess.run(cmd, check=False).returncode:
            return f"{tool} prediction failed"
    return out


LABELS = {"sac-from": "SAC fine-tuned from {}", "unadapted": "{} unadapted",
          "sac-base": "SAC from LiteMedSAM alone", "stardist": "StarDist (from scratch)",
          "cellpose": "cellpose 3 (from scratch)"}


def label(method: str) -> str:
    kind, _, model = method.partition(":")
    return LABELS.get(kind, method).format(model)


def summarise(files: list[Path], tag: str) -> None:
    """Means over the draws of each method and number of shots, from result files of this
    script (a later file's row for the same method, shots and draw replaces an earlier's),
    as a table and a plot of AJI against labelled images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(f.read_text()) for f in files]
    target = runs[0]["machine"]["target"]
    scored = {(r["method"], r["shots"], str(r["draw"])): r
              for run in runs for r in run["rows"] if "aji" in r}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for (method, shots, _), r in scored.items():
        groups.setdefault((method, shots), []).append(r)
    rows: list[dict[str, Any]] = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(m for m, _ in groups):
        points = sorted((k, g) for (m, k), g in groups.items() if m == method)
        for k, g in points:
            ajis = [r["aji"] for r in g]
            rows.append({"method": method, "shots": k, "draws": len(g),
                         **{key: round(float(np.mean([r[key] for r in g])), 4) for key in KEYS},
                         "aji_range": f"{min(ajis):.4f}-{max(ajis):.4f}",
                         "train_min": round(float(np.mean([r["train_min"] for r in g])), 1),
                         **{c: round(float(np.mean([r[c] for r in g])), 4)
                            for c in g[0] if c.startswith("aji_") and "clicks" in c},
                         "clicks_to_target": " ".join(str(r["clicks_to_target"]) for r in g
                                                      if "clicks_to_target" in r)})
        if method.startswith("unadapted:"):
            ax.axhline(rows[-1]["aji"], ls="--", color="grey", label=label(method))
            continue
        xs = [k for k, _ in points]
        line = ax.plot(xs, [float(np.mean([r["aji"] for r in g])) for _, g in points], "o-",
                       label=label(method))[0]
        for k, g in points:
            ax.scatter([k] * len(g), [r["aji"] for r in g], s=12, alpha=0.4,
                       color=line.get_color())
    ax.set_xscale("log")
    shots = sorted({k for _, k in groups if k})
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.minorticks_off()
    ax.set_xlabel("labelled images (log scale; dots: draws, line: mean)")
    ax.set_ylabel(f"AJI on {runs[0]['machine']['evaluation']} other images")
    ax.set_title(f"Few-shot adaptation to {target}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = f"fewshot_{target}_{tag}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    info = {"target": target, "from": ", ".join(
        f"{f.name} (commit {run['machine'].get('commit')})" for f, run in zip(
            files, runs, strict=True)), "figure": f"{name}.png"}
    _, md = write_results(name, info, rows, ["method", "shots", "draws", *KEYS, "aji_range",
                                             "train_min", *dict.fromkeys(
                                                 c for r in rows for c in r if "clicks" in c)],
                          f"Few-shot adaptation to {target}: means over draws")
    print(md.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="bitdepth")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--method", action="append", default=None,
                   help=f"default: {', '.join(DEFAULT_METHODS)}")
    p.add_argument("--runs", type=Path, default=Path("../runs/fewshot"))
    p.add_argument("--peer-envs", type=Path, default=Path("../peers"))
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--precision", default="auto")
    p.add_argument("--clicks", type=int, default=0,
                   help="corrective clicks per evaluation image for the SAC rows (0: none)")
    p.add_argument("--click-target", type=float, default=0.7,
                   help="report the clicks per image after which the mean AJI reaches this")
    p.add_argument("--tag", default="")
    p.add_argument("--summarise", type=Path, nargs="+", metavar="RESULT_JSON",
                   help="only summarise these result files (means, plot) under --tag")
    args = p.parse_args()
    if args.summarise:
        return summarise(args.summarise, args.tag or "summary")
    clicks = (args.clicks, args.click_target)
    info: dict[str, Any] = machine_info()
    ds, pool, evaluation, grey = target_sets(args.target)
    evaluation = evaluation[: args.eval_limit]
    root = args.runs / args.target.replace(":", "-")
    eval_dir = write_pairs(ds, evaluation, root / "eval")
    precision = "bf16" if use_bf16(args.precision, resolve_device("cpu")) else "fp32"
    rows: list[dict[str, Any]] = []
    methods = args.method or list(DEFAULT_METHODS)
    for method in (m for m in methods if m.startswith("unadapted:")):
        t0 = time.perf_counter()
        scores = score_model(method.split(":", 1)[1], ds, evaluation, precision, clicks,
                             root / method.replace(":", "-") / "scores.json")
        rows.append({"method": method, "shots": 0, "draw": "-", **scores,
                     "train_min": 0.0, "eval_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    for k in args.shots:
        for draw in range(args.draws):
            picked = sorted(np.random.default_rng([k, draw]).choice(pool, k, replace=False))
            data = write_pairs(ds, list(picked), root / f"k{k}_d{draw}" / "data")
            budget = None
            for method in methods:
                if method.startswith("unadapted:"):
                    continue
                run = root / f"k{k}_d{draw}" / method.replace(":", "-")
                row: dict[str, Any] = {"method": method, "shots": k, "draw": draw,
                                       "images": " ".join(picked)}
                if method.startswith("sac"):
                    model, minutes = run_sac(method, data, run, precision)
                    budget = budget if budget is not None else minutes
                    row.update(score_model(str(model), ds, evaluation, precision, clicks,
                                           run / "scores.json"), train_min=round(minutes, 2))
                else:
                    peer_data = root / f"k{k}_d{draw}" / "peer_data"
                    for part in ("train", "val"):  # they validate on their training images
                        write_pairs(ds, list(picked), peer_data / part)
                    got = run_peer(method, peer_data, run, eval_dir,
                                   budget or 10.0, grey, args.peer_envs)
                    if isinstance(got, str):
                        row["note"] = got
                    else:
                        row.update(score_folder(got, ds, evaluation),
                                   train_min=round(budget or 10.0, 2))
                rows.append(row)
                print(row, flush=True)
    info.update(target=args.target, pool=len(pool), evaluation=len(evaluation),
                precision=precision, methods=methods)
    if args.clicks:
        info["clicks"] = (f"up to {args.clicks} per evaluation image, SAC rows only (the "
                          "Correct widget's clicks, clicks.py's simulated user: the largest "
                          "merge, missed or invented nucleus first); aji_<n>clicks: mean AJI "
                          f"after n; clicks_to_target: clicks per image to a mean AJI of "
                          f"{args.click_target}")
    name = f"fewshot_{args.target.replace(':', '-')}{'_' + args.tag if args.tag else ''}"
    click_cols = [c for c in dict.fromkeys(k for r in rows for k in r) if "clicks" in c]
    _, md = write_results(name, info, rows, ["method", "shots", "draw", *KEYS, "train_min",
                                             *click_cols, "note", "images"],
                          f"Few-shot adaptation to {args.target}")
    print(md.read_text())
    sys.exit(0)


if __name__ == "__main__":
    main()
