"""MoNuSeg reader: H&E ``.tif`` tiles with Aperio ImageScope XML or instance-label PNG annotations.

Layout::

    ROOT/images/<stem>.tif          RGB tiles
    ROOT/annotations/<stem>.xml     Aperio ImageScope XML (optional per stem)
    ROOT/labels/<stem>.png          uint16 instance-label maps (optional per stem)

``annotation="auto"`` uses the label image when one exists for a stem, else the XML;
``"labels"`` / ``"xml"`` force one kind (stems without it are listed in ``problems``).

XML rasterisation (:func:`rasterize_regions`): every ``<Region>`` (in document order, over all
``<Annotation>`` elements) is one nucleus polygon whose ``<Vertex X= Y=>`` are float image
coordinates (X = column, Y = row). By default they are continuous coordinates: pixel (r, c)
covers [c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5), and the image spans [0, W] x
[0, H]. A pixel belongs to a polygon when its centre is inside (:func:`skimage.draw.polygon`).
``pixel_offset=1.0`` instead treats vertices as 1-based pixel centres (MATLAB ``poly2mask``
style), which reproduces the third-party MoNuSeg label PNGs more closely (they are shifted by
about half a pixel against the default, which fits the image content slightly better).
Where polygons overlap, **later regions overwrite earlier ones**. Ids are then renumbered 1..N
in region order, so a region that is completely covered by later ones (or covers no pixel
centre) disappears, with a warning. Recoverable problems become warnings on the sample (and in
the log): regions with fewer than 3 vertices are skipped, vertices outside the image are clipped
to it, negative (exclusion) regions are skipped. An annotation file without any region, or that
is not well-formed XML, or a vertex without numeric X/Y, is an :class:`InputError`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from skimage.draw import polygon as draw_polygon

from sac.core.errors import InputError
from sac.data.base import Item, Problem, Sample, SampleDataset, warn
from sac.data.images import check_same_size, is_image_file, read_labels, read_rgb

Annotation = Literal["auto", "xml", "labels"]
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class Region:
    """One polygon from an Aperio XML file; ``xy`` is float (N, 2) as (X = column, Y = row)."""

    region_id: str
    xy: np.ndarray
    negative: bool = False


def parse_aperio_xml(path: str | Path) -> list[Region]:
    """Parse all ``<Region>`` polygons of an Aperio ImageScope XML file.

    Raises :class:`InputError` for a missing/empty/malformed file, a file without regions, or a
    vertex whose X/Y is not a number. Regions with < 3 vertices are returned as they are (the
    rasteriser skips them with a warning).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: annotation file is empty (0 bytes); re-export it")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(
            f"{path}: malformed XML ({exc}); the file is truncated or not an Aperio ImageScope "
            "annotation, re-export it from ImageScope"
        ) from exc
    regions: list[Region] = []
    for k, reg in enumerate(root.iter("Region")):
        rid = reg.get("Id") or f"#{k + 1}"
        points: list[tuple[float, float]] = []
        for v in reg.iter("Vertex"):
            try:
                points.append((float(v.get("X", "")), float(v.get("Y", ""))))
            except ValueError as exc:
                raise InputError(
                    f"{path}: region {rid} has a vertex with a missing or non-numeric coordinate "
                    f"(X={v.get('X')!r}, Y={v.get('Y')!r}); fix or re-export the annotation"
                ) from exc
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise InputError(f"{path}: region {rid} has NaN/infinite coordinates; fix the file")
        regions.append(Region(rid, xy, negative=reg.get("NegativeROA", "0") == "1"))
    if not regions:
        raise InputError(
            f"{path}: no <Region> polygons found (empty annotation); expected Aperio ImageScope "
            "XML with <Annotation><Regions><Region><Vertices><Vertex X= Y=/>; check the file"
        )
    return regions


def rasterize_regions(
    regions: list[Region],
    shape: tuple[int, int],
    source: str = "annotation",
    warnings: list[str] | None = None,
    pixel_offset: float = 0.5,
) -> np.ndarray:
    """Fill polygons into a uint32 instance-label image of ``shape`` (see module docstring).

    ``pixel_offset`` is subtracted from the vertex coordinates before testing pixel centres.
    Warnings are appended to ``warnings`` (if given) and logged; ``source`` names the file.
    """
    msgs: list[str] = warnings if warnings is not None else []
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), dtype=np.uint32)
    n_drawn = 0
    few: list[str] = []
    clipped: list[str] = []
    for reg in regions:
        if reg.negative:
            warn(
                msgs, f"{source}: region {reg.region_id} is a negative (exclusion) region; skipped"
            )
            continue
        if len(reg.xy) < 3:
            few.append(f"{reg.region_id} ({len(reg.xy)} vertices)")
            continue
        x, y = reg.xy[:, 0] - pixel_offset, reg.xy[:, 1] - pixel_offset
        lo, x_hi, y_hi = -pixel_offset, w - pixel_offset, h - pixel_offset  # the image extent
        if x.min() < lo or y.min() < lo or x.max() > x_hi or y.max() > y_hi:
            clipped.append(reg.region_id)
            x = np.clip(x, lo, x_hi)
            y = np.clip(y, lo, y_hi)
        rr, cc = draw_polygon(y, x, shape=(h, w))
        n_drawn += 1
        labels[rr, cc] = n_drawn
    if few:
        warn(
            msgs,
            f"{source}: skipped {len(few)} region(s) with fewer than 3 vertices: {', '.join(few)}",
        )
    if clipped:
        warn(
            msgs,
            f"{source}: {len(clipped)} region(s) had vertices outside the "
            f"{h}x{w} image and were clipped to it: {', '.join(clipped)}",
        )
    present = np.zeros(n_drawn + 1, dtype=bool)
    present[np.unique(labels)] = True
    present[0] = False
    n_present = int(present.sum())
    if n_present < n_drawn:
        lost = np.flatnonzero(~present[1:])
        warn(
            msgs,
            f"{source}: {len(lost)} polygon(s) cover no pixel (too small, degenerate, "
            "or fully overwritten by later regions) and were dropped",
        )
        lut = np.zeros(n_drawn + 1, dtype=np.uint32)
        lut[present] = np.arange(1, n_present + 1, dtype=np.uint32)
        labels = lut[labels]
    if n_present == 0:
        raise InputError(
            f"{source}: no usable nucleus polygon (all regions were skipped or empty); "
            "check the annotation file"
        )
    return labels


def read_aperio_xml(
    path: str | Path,
    shape: tuple[int, int],
    warnings: list[str] | None = None,
    pixel_offset: float = 0.5,
) -> np.ndarray:
    """Read an Aperio ImageScope XML file into a uint32 instance-label image of ``shape``."""
    return rasterize_regions(
        parse_aperio_xml(path), shape, str(path), warnings=warnings, pixel_offset=pixel_offset
    )


def _find_label_file(folder: Path, stem: str) -> Path | None:
    for suffix in LABEL_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


class MoNuSegDataset(SampleDataset):
    """Lazy MoNuSeg dataset over ``ROOT/images`` with XML and/or label-image annotations."""

    source = "monuseg"

    def __init__(
        self, root: str | Path, annotation: Annotation = "auto", pixel_offset: float = 0.5
    ) -> None:
        super().__init__(root)
        self.pixel_offset = pixel_offset
        if annotation not in ("auto", "xml", "labels"):
            raise InputError(
                f"annotation={annotation!r} is not valid; use 'auto', 'xml' or 'labels'"
            )
        self.annotation = annotation
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise InputError(
                f"{self.root}: no 'images' folder; expected ROOT/images/*.tif with "
                "ROOT/annotations/*.xml and/or ROOT/labels/*.png"
            )
        xml_dir, labels_dir = self.root / "annotations", self.root / "labels"
        for img in sorted(p for p in images_dir.iterdir() if is_image_file(p)):
            stem = img.stem
            xml = xml_dir / f"{stem}.xml"
            lab = _find_label_file(labels_dir, stem) if labels_dir.is_dir() else None
            if annotation in ("auto", "labels") and lab is not None:
                self._items.append(Item(stem, img, (lab,), "labels"))
            elif annotation in ("auto", "xml") and xml.is_file():
                self._items.append(Item(stem, img, (xml,), "xml"))
            else:
                wanted = {
                    "auto": f"{labels_dir / stem}.png or {xml}",
                    "labels": f"{labels_dir / stem}.png",
                    "xml": str(xml),
                }[annotation]
                msg = f"no annotation found (looked for {wanted}); add it or drop the image"
                self.problems.append(Problem(stem, img, msg))
        if not self._items and not self.problems:
            raise InputError(f"{images_dir}: no image files (.tif, .png, ...) found")

    def _read(self, item: Item) -> Sample:
        image = read_rgb(item.image)
        ann = item.annotations[0]
        msgs: list[str] = []
        if item.kind == "labels":
            labels = read_labels(ann)
            check_same_size(image, labels, item.image, ann)
        else:
            labels = read_aperio_xml(
                ann, image.shape[:2], warnings=msgs, pixel_offset=self.pixel_offset
            )
        return Sample(item.name, image, labels, f"{self.source}:{item.kind}", msgs)
