"""Fit and store a model's size head (maintainers; ``sac train`` does it for new models).

Fits the nucleus-size regression of :mod:`sac.training.size_fit` on the model's training
split, its penalty chosen on the validation split, and writes ``size_head.safetensors`` and
``config.json``'s ``size_head`` record into the model folder (shipped ones included). Usage::

    .venv/bin/python scripts/fit_size_head.py MODEL_DIR --data DIR --format F --split S
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sac.data.open import open_dataset, resolve_split
from sac.training.size_fit import MAX_IMAGES, add_size_head


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--format", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--max-images", type=int, default=MAX_IMAGES)
    args = p.parse_args()
    split = resolve_split(args.split)
    t0 = time.perf_counter()
    record = add_size_head(args.model, open_dataset(args.data, args.format), list(split.train),
                           list(split.val), args.max_images)
    print(json.dumps(record, indent=2))
    print(f"{args.model}: size head written ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
