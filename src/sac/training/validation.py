"""Validation during training: the full inference pipeline scored on held-out images."""

from __future__ import annotations

from sac.model import SACModel
from sac.training.sampler import TrainImage

PER_SOURCE = ("aji", "pixel_dice", "pq", "f1_obj", "dsb_score")  # logged per dataset


def validate(model: SACModel, images: list[TrainImage], bf16: bool) -> dict[str, float]:
    """Aggregate metrics of the full inference pipeline on the validation images.

    With several sources (a generalist's datasets) every score is the mean over sources, each
    weighing the same (see :func:`sac.metrics.aggregate`), and each source's own
    :data:`PER_SOURCE` scores are added as ``"<metric>@<source>"``, so the log shows whether
    the model trades one dataset for another.
    """
    from sac.metrics import aggregate, aggregate_groups, evaluate_pair
    from sac.pipeline.segmenter import Segmenter

    seg = Segmenter(model, precision="bf16" if bf16 else "fp32", runtime="torch")
    rows = []
    for im in images:
        pred = seg.segment(im.rgb, im.name, scale=1.0)
        rows.append(evaluate_pair(im.labels, pred.labels))
    sources = [im.source for im in images]
    out = {k: float(v) for k, v in aggregate(rows, sources).items()}
    if len(set(sources)) > 1:
        for name, own in aggregate_groups(rows, sources).items():
            out.update({f"{k}@{name}": float(own[k]) for k in PER_SOURCE})
    return out
