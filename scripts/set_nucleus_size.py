"""Record a model's training nucleus size (``nucleus_diameter``) in its config (maintainers).

``sac train`` records it for new models; this adds it to a model trained before that, from the
same training images at the model's scale. Usage::

    .venv/bin/python scripts/set_nucleus_size.py MODEL_DIR --data DIR --format F --split S
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sac.data.open import open_dataset, resolve_split
from sac.model import read_config
from sac.pipeline.size import training_size
from sac.training.sampler import load_images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--format", required=True)
    p.add_argument("--split", required=True)
    args = p.parse_args()
    cfg = read_config(args.model)
    images, problems = load_images(open_dataset(args.data, args.format),
                                   list(resolve_split(args.split).train), cfg.input_scale)
    if problems:
        raise SystemExit(f"unreadable training images: {problems[:3]}")
    d, rng = training_size([im.labels for im in images])
    path = args.model / "config.json"
    doc = json.loads(path.read_text())
    doc["nucleus_diameter"] = d
    doc["nucleus_diameter_range"] = None if rng is None else list(rng)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    read_config(args.model)  # still valid
    print(f"{args.model}: nucleus_diameter {d} px (range {rng}) at the model input "
          f"({len(images)} training images)")


if __name__ == "__main__":
    main()
