"""2018 Data Science Bowl (BBBC038) reader in the original Kaggle layout.

Layout::

    ROOT/<id>/images/<id>.png      RGBA, RGB or gray (alpha is dropped, see sac.data.images)
    ROOT/<id>/masks/*.png          one binary mask per nucleus (0 / 255)

Masks are read in sorted file-name order; the k-th *non-empty* mask becomes instance id k, so
the instance count equals the number of non-empty mask files. Any non-zero pixel is foreground.
Masks should not overlap; if they do, later masks (in file-name order) win and a warning is
recorded on the sample. Empty (all-zero) masks are skipped with a warning. Folders without an
image or without any mask file (e.g. stage-1 *test* folders) are listed in ``problems``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sac.core.errors import InputError
from sac.data.base import Item, Problem, Sample, SampleDataset, warn
from sac.data.images import IMAGE_SUFFIXES, check_same_size, read_image, read_rgb


def _list_images(folder: Path) -> list[Path]:
    """Sorted image files in ``folder`` (os.scandir: no stat per file, fast for 29k masks)."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if e.is_file()
            and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        )


def mask_foreground(mask: np.ndarray) -> np.ndarray:
    """Boolean foreground of one mask array: any non-zero colour channel (alpha ignored)."""
    if mask.ndim == 3:
        channels = mask.shape[2]
        if channels in (2, 4):  # drop alpha
            mask = mask[..., : channels - 1]
        return np.any(mask != 0, axis=2)
    return mask != 0


def combine_masks(
    masks: list[Path], shape: tuple[int, int], image_path: Path, warnings: list[str]
) -> np.ndarray:
    """Merge per-nucleus mask files into one uint32 instance-label image of ``shape``."""
    labels = np.zeros(shape, dtype=np.uint32)
    n = 0
    empty: list[str] = []
    overlaps: list[str] = []
    for path in masks:
        fg = mask_foreground(read_image(path))
        check_same_size(np.empty(shape, dtype=bool), fg, image_path, path)
        if not fg.any():
            empty.append(path.name)
            continue
        n += 1
        n_overlap = int(np.count_nonzero(labels[fg]))
        if n_overlap:
            overlaps.append(f"{path.name} ({n_overlap} px)")
        labels[fg] = n
    folder = masks[0].parent if masks else image_path.parent
    if empty:
        warn(warnings, f"{folder}: {len(empty)} empty mask file(s) skipped: {', '.join(empty)}")
    if overlaps:
        warn(
            warnings,
            f"{folder}: {len(overlaps)} mask(s) overlap earlier ones; later masks win "
            f"(sorted by file name): {', '.join(overlaps)}",
        )
        if np.count_nonzero(np.unique(labels)) < n:
            warn(
                warnings,
                f"{folder}: some masks are completely covered by later ones, so the "
                "instance count is below the number of non-empty mask files",
            )
    return labels


class DSB2018Dataset(SampleDataset):
    """Lazy DSB 2018 stage-1 dataset: one folder per sample, masks merged on reading."""

    source = "dsb2018"

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name[0] != "."):
            images = _list_images(d / "images")
            preferred = d / "images" / f"{d.name}.png"
            if preferred.is_file():
                image = preferred
            elif len(images) == 1:
                image = images[0]
            else:
                what = "no image" if not images else f"{len(images)} images and none named"
                self.problems.append(
                    Problem(
                        d.name,
                        d,
                        f"{what} {preferred.name} in {d / 'images'}; expected exactly {preferred}",
                    )
                )
                continue
            masks = _list_images(d / "masks")
            if not masks:
                self.problems.append(
                    Problem(
                        d.name,
                        image,
                        f"no mask files in {d / 'masks'} (image without labels); "
                        "add one PNG per nucleus or remove the folder",
                    )
                )
                continue
            self._items.append(Item(d.name, image, tuple(masks), "masks"))
        if not self._items and not self.problems:
            raise InputError(
                f"{self.root}: no sample folders found; expected ROOT/<id>/images/<id>.png and "
                "ROOT/<id>/masks/*.png (the DSB 2018 stage1_train layout)"
            )

    def _read(self, item: Item) -> Sample:
        image = read_rgb(item.image)
        msgs: list[str] = []
        labels = combine_masks(list(item.annotations), image.shape[:2], item.image, msgs)
        return Sample(item.name, image, labels, self.source, msgs)
