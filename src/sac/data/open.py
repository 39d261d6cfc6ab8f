"""Opening a dataset by layout name, and resolving a split given as a file or built-in name.

Used by ``sac train``, ``sac tune``, ``sac evaluate`` and the benchmarks alike.
"""

from __future__ import annotations

from pathlib import Path

from sac.core.errors import ConfigError
from sac.data.base import SampleDataset
from sac.data.splits import BUILTIN_SPLITS, Split, load_builtin_split, read_split, stratified_split

#: dataset layouts ``open_dataset`` reads
FORMATS = ("monuseg", "dsb2018", "folder")
#: fraction of a dataset that validates when no split is given
DEFAULT_VAL_FRACTION = 0.1
#: datasets with fewer images are not split (all of them train)
MIN_IMAGES_TO_SPLIT = 5


def open_dataset(path: Path, fmt: str) -> SampleDataset:
    """The lazy dataset reader for ``fmt`` (one of :data:`FORMATS`) over ``path``."""
    from sac.data.dsb2018 import DSB2018Dataset
    from sac.data.folders import FolderDataset
    from sac.data.monuseg import MoNuSegDataset

    readers = {"monuseg": MoNuSegDataset, "dsb2018": DSB2018Dataset, "folder": FolderDataset}
    if fmt not in readers:
        raise ConfigError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    return readers[fmt](path)


def resolve_split(value: str) -> Split:
    """A split from a JSON file path, or a built-in split by name."""
    if Path(value).is_file():
        return read_split(value)
    if value in BUILTIN_SPLITS:
        return load_builtin_split(value)
    raise ConfigError(
        f"--split {value!r}: no such file and not a built-in split "
        f"({', '.join(BUILTIN_SPLITS)})"
    )


def train_val_names(dataset: SampleDataset, split: str | None, seed: int
                    ) -> tuple[list[str], list[str]]:
    """Training and validation names: from ``split`` when given, else a deterministic
    :data:`DEFAULT_VAL_FRACTION` of the images validates (none for tiny datasets)."""
    if split is not None:
        s = resolve_split(split)
        return list(s.train), list(s.val)
    names = dataset.names
    if len(names) < MIN_IMAGES_TO_SPLIT:
        return names, []
    return stratified_split({n: "all" for n in names}, DEFAULT_VAL_FRACTION, seed)


def dataset_keys(formats: list[str]) -> list[str]:
    """Keys of the parts of a mixed dataset: the format names, numbered when repeated."""
    keys = []
    for i, f in enumerate(formats):
        n = formats[:i].count(f)  # earlier folders of the same format
        keys.append(f if n == 0 else f"{f}-{n + 1}")
    return keys


def open_training_data(paths: list[Path], formats: list[str], splits: list[str | None],
                       seed: int) -> tuple[SampleDataset, list[str], list[str]]:
    """The dataset and its training and validation names for one or several folders.

    ``formats`` and ``splits`` hold one entry per path, or one for all of them. With several
    paths the result is a :class:`sac.data.mixed.MixedDataset` whose parts are keyed by format
    (:func:`dataset_keys`), each split by its own ``splits`` entry.
    """
    from sac.data.mixed import MixedDataset, prefixed

    n = len(paths)
    if n == 0:
        raise ConfigError("no dataset folder given")
    for what, values in (("--format", formats), ("--split", splits)):
        if len(values) not in (1, n):
            raise ConfigError(f"{what} was given {len(values)} times for {n} --data folders; "
                              f"give it once (for all) or once per --data, in the same order")
    formats = formats * n if len(formats) == 1 else formats
    splits = splits * n if len(splits) == 1 else splits
    if n == 1:
        dataset = open_dataset(paths[0], formats[0])
        return (dataset, *train_val_names(dataset, splits[0], seed))
    keys = dataset_keys(formats)
    parts = {k: open_dataset(p, f) for k, p, f in zip(keys, paths, formats, strict=True)}
    train: list[str] = []
    val: list[str] = []
    for k, s in zip(keys, splits, strict=True):
        t, v = train_val_names(parts[k], s, seed)
        train += prefixed(k, t)
        val += prefixed(k, v)
    return MixedDataset(parts), train, val
