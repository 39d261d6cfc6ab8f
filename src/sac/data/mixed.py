"""Several datasets read as one, for models trained on more than one source (a generalist).

Each sample's name gets its part's key in front (``"monuseg/TCGA-..."``), so names stay unique
and say where a sample came from; :meth:`MixedDataset.source_of` gives that key back, which the
crop sampler uses to give every source the same share of training crops, whatever its size.
"""

from __future__ import annotations

from dataclasses import replace

from sac.core.errors import ConfigError
from sac.data.base import Item, Problem, Sample, SampleDataset

SEPARATOR = "/"


class MixedDataset(SampleDataset):
    """The union of ``parts`` (key -> dataset), names prefixed with ``key/``."""

    source = "mixed"

    def __init__(self, parts: dict[str, SampleDataset]) -> None:
        if len(parts) < 2:
            raise ConfigError("a mixed dataset needs at least two parts")
        bad = [k for k in parts if not k or SEPARATOR in k]
        if bad:
            raise ConfigError(f"dataset keys must be non-empty and free of {SEPARATOR!r}: {bad}")
        first = next(iter(parts.values()))
        super().__init__(first.root)
        self.parts = dict(parts)
        for key, ds in self.parts.items():
            self._items += [replace(it, name=f"{key}{SEPARATOR}{it.name}") for it in ds.items]
            self.problems += [replace(p, name=f"{key}{SEPARATOR}{p.name}") for p in ds.problems]

    def split_name(self, name: str) -> tuple[str, str]:
        """(part key, the name inside that part) of a prefixed ``name``."""
        key, sep, inner = name.partition(SEPARATOR)
        if not sep or key not in self.parts:
            raise KeyError(f"{name!r} does not start with one of {sorted(self.parts)} and "
                           f"{SEPARATOR!r}")
        return key, inner

    def source_of(self, name: str) -> str:
        """The part a sample comes from."""
        return self.split_name(name)[0]

    def _read(self, item: Item) -> Sample:
        key, inner = self.split_name(item.name)
        part = self.parts[key]
        sample = part._read(replace(item, name=inner))
        sample.name = item.name
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={len(v)}" for k, v in self.parts.items())
        return f"MixedDataset({inner}, problems={len(self.problems)})"


def prefixed(key: str, names: list[str]) -> list[str]:
    """``names`` of part ``key`` as a :class:`MixedDataset` calls them."""
    return [f"{key}{SEPARATOR}{n}" for n in names]


__all__ = ["SEPARATOR", "MixedDataset", "Problem", "prefixed"]
