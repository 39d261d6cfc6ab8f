"""SAC's side of the peer speed comparison: the same contract as the peers' ``--predict``.

Run with SAC's environment. Times every ``.tif`` image of a folder with a model (default
settings of ``sac segment``: automatic scale, bf16 off unless asked) or with the classical
baseline, from reading the file to writing the labels; prints one JSON line with the seconds
per image, the load time and the peak memory.

    python sac_predict.py --model sac-lite-monuseg --predict IMAGES --out LABELS
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from peer_common import time_predictions

from sac.cli.common import add_precision


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sac-lite-monuseg")
    p.add_argument("--classical", default=None, metavar="JSON",
                   help='the classical baseline instead, with these parameters, e.g. '
                        '\'{"sigma": 1.0, "min_distance": 8}\'')
    p.add_argument("--predict", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    add_precision(p)
    args = p.parse_args()
    from sac.data.images import read_image

    t0 = time.perf_counter()
    if args.classical is not None:
        from sac.core.images import to_rgb_float
        from sac.pipeline.classical import classical_instances

        params = json.loads(args.classical)

        def segment(image: Any) -> Any:
            return classical_instances(to_rgb_float(image), **params)
        tool = "classical"
    else:
        from sac.pipeline.segmenter import load_segmenter

        seg = load_segmenter(args.model, precision=args.precision)

        def segment(image: Any) -> Any:
            return seg.segment(image).labels
        tool = "sac"
    load_s = time.perf_counter() - t0
    return time_predictions(tool, args.predict, args.out, load_s,
                            lambda path: segment(read_image(path)))


if __name__ == "__main__":
    raise SystemExit(main())
