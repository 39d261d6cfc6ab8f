"""The sample type and the lazy dataset base class shared by all readers.

A dataset object only *lists* its items (name + file paths) when it is created, which is cheap
even for the 670 DSB folders; pixels are read one sample at a time in ``__getitem__``. Items that
cannot be used (e.g. an image without labels) are recorded in ``problems`` instead of making the
whole dataset fail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sac.core.errors import InputError
from sac.data.images import read_rgb

log = logging.getLogger("sac.data")


@dataclass
class Sample:
    """One image with its instance labels.

    ``image`` is RGB uint8 (H, W, 3); ``labels`` is uint32 (H, W), 0 = background, 1..N = objects.
    ``source`` says which reader/annotation produced it (e.g. ``"monuseg:xml"``, ``"dsb2018"``);
    ``warnings`` collects non-fatal annotation problems found while reading (also logged).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def n_instances(self) -> int:
        """Number of distinct non-zero label ids."""
        ids = np.unique(self.labels)
        return int(np.count_nonzero(ids))


@dataclass(frozen=True)
class Item:
    """A listed (not yet read) sample: its name, image file and annotation file(s)."""

    name: str
    image: Path
    annotations: tuple[Path, ...]
    kind: str  # how ``annotations`` is interpreted, e.g. "labels", "xml", "masks"


@dataclass(frozen=True)
class Problem:
    """An entry that was found on disk but cannot be used, with the reason and what to do."""

    name: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def warn(sample_warnings: list[str], message: str) -> None:
    """Record a non-fatal reading problem on the sample and in the log."""
    sample_warnings.append(message)
    log.warning(message)


class SampleDataset:
    """Base class: holds listed :class:`Item` s and reads one :class:`Sample` on demand.

    Subclasses fill ``self._items`` / ``self.problems`` in ``__init__`` and implement
    :meth:`_read`. Index with an int (negative allowed) or with a sample name.
    """

    source = "dataset"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(
                f"{self.root}: dataset folder not found (or not a folder); check the path"
            )
        self._items: list[Item] = []
        self.problems: list[Problem] = []

    # --- listing -------------------------------------------------------------------------
    @property
    def items(self) -> list[Item]:
        """The usable items, sorted by name."""
        return list(self._items)

    @property
    def names(self) -> list[str]:
        """Names of the usable samples, sorted."""
        return [it.name for it in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def index_of(self, name: str) -> int:
        """Position of the sample called ``name``."""
        for i, it in enumerate(self._items):
            if it.name == name:
                return i
        raise KeyError(f"no sample named {name!r} in {self.root}")

    def item(self, key: int | str) -> Item:
        """The listed :class:`Item` for an index or a name."""
        if isinstance(key, str):
            return self._items[self.index_of(key)]
        return self._items[key]

    # --- reading -------------------------------------------------------------------------
    def __getitem__(self, key: int | str) -> Sample:
        """Read one sample (by position or name); only this sample's files are opened."""
        return self._read(self.item(key))

    def __iter__(self) -> Iterator[Sample]:
        for it in self._items:
            yield self._read(it)

    def source_of(self, name: str) -> str:
        """Which part of the data ``name`` comes from: ``""`` for a single-source dataset
        (:class:`sac.data.mixed.MixedDataset` names its parts)."""
        return ""

    def read_image(self, key: int | str) -> np.ndarray:
        """Only the RGB uint8 image of one sample (skips reading annotations)."""
        return read_rgb(self.item(key).image)

    def _read(self, item: Item) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, samples={len(self)}, "
            f"problems={len(self.problems)})"
        )
