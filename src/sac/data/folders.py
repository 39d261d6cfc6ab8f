"""Generic image + instance-label folders, in two common layouts.

``layout="images_labels"``::

    ROOT/images/<stem>.<ext>       images (PNG, JPEG, TIFF)
    ROOT/labels/<stem>.<ext>       instance-label images (or ROOT/masks/), extensions may differ;
                                   ``<stem><mask_suffix>.<ext>`` is accepted too

``layout="cellpose"`` (the cellpose training convention, one folder)::

    ROOT/<name>.tif  +  ROOT/<name>_masks.tif   (or .png; suffix configurable)

``layout="auto"`` picks ``images_labels`` when ``ROOT/images`` exists, else ``cellpose``.
Label images are integer instance ids (0 = background), used as they are (a binary 0/255 mask
is therefore ONE object with id 255). Images without labels, labels without an image and
ambiguous matches are listed in ``problems``; the rest of the dataset stays usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sac.core.errors import InputError
from sac.data.base import Item, Problem, Sample, SampleDataset
from sac.data.images import check_same_size, is_image_file, read_labels, read_rgb

Layout = Literal["auto", "images_labels", "cellpose"]


def _by_stem(files: list[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in files:
        out.setdefault(p.stem, []).append(p)
    return out


class FolderDataset(SampleDataset):
    """Lazy dataset over a generic ``images/`` + ``labels/`` folder or a cellpose-style folder."""

    source = "folder"

    def __init__(
        self, root: str | Path, layout: Layout = "auto", mask_suffix: str = "_masks"
    ) -> None:
        super().__init__(root)
        if layout not in ("auto", "images_labels", "cellpose"):
            raise InputError(
                f"layout={layout!r} is not valid; use 'auto', 'images_labels' or 'cellpose'"
            )
        if not mask_suffix:
            raise InputError("mask_suffix must not be empty (cellpose uses '_masks')")
        self.mask_suffix = mask_suffix
        if layout == "auto":
            layout = "images_labels" if (self.root / "images").is_dir() else "cellpose"
        self.layout = layout
        if layout == "images_labels":
            self._list_images_labels()
        else:
            self._list_cellpose()
        if not self._items and not self.problems:
            raise InputError(
                f"{self.root}: no image files found; expected ROOT/images/ + ROOT/labels/ "
                f"(or ROOT/masks/), or <name>.tif with <name>{mask_suffix}.tif in one folder"
            )

    def _list_images_labels(self) -> None:
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise InputError(f"{self.root}: no 'images' folder; expected ROOT/images/")
        labels_dir = next(
            (d for d in (self.root / "labels", self.root / "masks") if d.is_dir()), None
        )
        if labels_dir is None:
            raise InputError(
                f"{self.root}: found 'images' but no 'labels' or 'masks' folder next to it; "
                "put one instance-label image per image there, with the same file stem"
            )
        images = sorted(p for p in images_dir.iterdir() if is_image_file(p))
        labels = _by_stem(sorted(p for p in labels_dir.iterdir() if is_image_file(p)))
        used: set[str] = set()
        for img in images:
            key = next((k for k in (img.stem, img.stem + self.mask_suffix) if k in labels), None)
            if key is None:
                self.problems.append(
                    Problem(
                        img.stem,
                        img,
                        f"image without labels: no file named {img.stem}.* in "
                        f"{labels_dir}; add its label image or remove the image",
                    )
                )
                continue
            used.add(key)
            self._add(img.stem, img, labels[key], "labels")
        self._orphans(labels, used, images_dir)

    def _list_cellpose(self) -> None:
        files = sorted(p for p in self.root.iterdir() if is_image_file(p))
        masks = _by_stem([p for p in files if p.stem.endswith(self.mask_suffix)])
        images = [p for p in files if not p.stem.endswith(self.mask_suffix)]
        used: set[str] = set()
        for img in images:
            key = img.stem + self.mask_suffix
            if key not in masks:
                self.problems.append(
                    Problem(
                        img.stem,
                        img,
                        f"image without labels: no {key}.tif/.png next to it; "
                        "add the mask file or move the image out of the folder",
                    )
                )
                continue
            used.add(key)
            self._add(img.stem, img, masks[key], "cellpose")
        self._orphans(masks, used, self.root)

    def _add(self, name: str, image: Path, labels: list[Path], kind: str) -> None:
        if len(labels) > 1:
            files = ", ".join(p.name for p in labels)
            self.problems.append(
                Problem(
                    name,
                    image,
                    f"ambiguous labels: several files match ({files}); keep only one",
                )
            )
            return
        if any(it.name == name for it in self._items):
            self.problems.append(
                Problem(
                    name,
                    image,
                    f"duplicate image name {name!r} (same stem, different extension); "
                    "rename or remove one of the files",
                )
            )
            return
        self._items.append(Item(name, image, (labels[0],), kind))

    def _orphans(self, labels: dict[str, list[Path]], used: set[str], folder: Path) -> None:
        for key in sorted(set(labels) - used):
            for p in labels[key]:
                self.problems.append(
                    Problem(
                        key,
                        p,
                        f"labels without an image: no image with a matching name in {folder}; "
                        "add the image or remove the label file",
                    )
                )

    def _read(self, item: Item) -> Sample:
        image = read_rgb(item.image)
        labels = read_labels(item.annotations[0])
        check_same_size(image, labels, item.image, item.annotations[0])
        source = self.source if item.kind == "labels" else f"{self.source}:{item.kind}"
        return Sample(item.name, image, labels, source)
