"""``sac.tune``: choose a trained model's thresholds on validation images, and save it.

The workflow behind ``sac tune`` (which only parses its flags and prints the outcome): open
the dataset, load the validation images of a split at the model's scale, run
:func:`sac.training.tune.tune_model_folder`, and write the model in place or to a new folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sac.core.errors import ConfigError, InputError


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def tune(model: str | Path, data: str | Path, format: str, split: str, *,
         output: str | Path | None = None, limit: int | None = None,
         precision: str = "auto", fill: bool = True, settings: Sequence[str] | None = None,
         metric: str | None = None, say: Callable[[str], None] = _stderr
         ) -> tuple[dict[str, Any], list[str]]:
    """Tune ``model`` (a folder; shipped models need ``output``) on the validation images of
    ``split`` in ``data`` (layout ``format``): the detection thresholds, then ``settings``
    (default :data:`~sac.training.tune.DEFAULT_SETTINGS`; ``()``: none) on the whole
    pipeline, then with ``fill`` the completion from the semantic mask, each chosen by pixel
    Dice + ``metric`` (default: the model's selection metric). Saved to ``output`` (a new
    folder) or in place. Returns the tuning record and the images skipped (each said)."""
    from sac.core.device import resolve_device, use_bf16
    from sac.data.open import open_dataset, resolve_split
    from sac.model import read_config, resolve_model
    from sac.model.store import is_shipped
    from sac.training.sampler import load_images, require_nuclei
    from sac.training.tune import DEFAULT_SETTINGS, at_own_size, tune_model_folder

    folder = resolve_model(str(model))
    out = None if output is None else Path(output)
    if out is None and is_shipped(folder):
        raise ConfigError(f"{model} is a model shipped with sac and is read-only; pass "
                          "-o FOLDER to write the tuned copy there")
    if out is not None and out.exists():
        raise InputError(f"{out} already exists; choose a new folder for -o")
    scale = read_config(folder).input_scale
    dataset = open_dataset(Path(data), format)
    images, problems = load_images(dataset, list(resolve_split(split).val), scale, limit)
    for msg in problems:
        say(f"sac tune: skipped {msg}")
    if not images:
        raise InputError("no usable validation images to tune on")
    require_nuclei(images, "validation")
    chosen = tuple(DEFAULT_SETTINGS if settings is None else settings)
    whole = chosen or fill  # whole-pipeline stages score at own size
    full = at_own_size(dataset, images, scale) if whole else None
    bf16 = use_bf16(precision, resolve_device("cpu"))
    record = tune_model_folder(folder, images, out, bf16, fill=fill, full=full,
                               settings=chosen, target=metric)
    return record, problems
