"""Whole-slide segmentation in bounded memory, resumable after an interruption.

The slide (or a region of it) is cut into large overlapping chunks at the processing level.
Each chunk is read on its own, scaled by its dtype range (never min-max per chunk, so all
chunks look alike to the model), segmented with the in-memory pipeline, and only the nuclei
whose centroid lies in the chunk's core are kept: cores partition the region, so each nucleus
is reported once, whole, as long as it is smaller than half the overlap. A chunk without
tissue (thumbnail mask) is skipped.

Each finished chunk's nuclei are written atomically as a part (:mod:`sac.slides.parts`); a
rerun skips chunks already there, so an interrupted run resumes where it stopped. The final
GeoJSON and CSV are assembled from the parts, nuclei numbered 1..N in chunk order.

The work is split in three so that it can be spread over processes: :func:`plan_slide` (level,
scale, chunk grid, tissue mask, resume folder), :func:`segment_chunk` (one chunk, anywhere)
and :func:`sac.slides.parts.assemble`. :func:`segment_slide` runs all three in one process,
optionally on a subset of the chunks (``select``, for job-array shards).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from sac.core.errors import ConfigError, InputError
from sac.core.fileio import check_writable
from sac.core.labels import relabel_sequential
from sac.outputs.kinds import output_paths
from sac.outputs.shapes import label_shapes
from sac.outputs.table import measure_nuclei
from sac.pipeline.scale import ScaleRequest, auto_scale_off, choose_scale, slide_scale
from sac.pipeline.segmenter import Segmenter
from sac.pipeline.size import SizeEstimate
from sac.slides import SlideTile, open_slide, slide_tiles, slide_tissue_mask, tile_has_tissue
from sac.slides.grid import check_region
from sac.slides.options import SlideOptions
from sac.slides.parts import (
    PARTS_SUFFIX,
    assemble,
    has_part,
    missing_parts,
    open_parts,
    write_part,
)

MAX_REGION_LABEL_PIXELS = 400_000_000  # a full label image is only offered below this
log = logging.getLogger("sac.slides")
SIZE_SAMPLES = 4  # tissue chunks sampled for a slide's nucleus size (unknown pixel size)


@dataclass
class SlideResult:
    """What a whole-slide run produced."""

    n_nuclei: int
    n_chunks: int
    n_skipped_no_tissue: int
    n_resumed: int
    seconds: float
    level: int
    downsample: float
    outputs: dict[str, Path] = field(default_factory=dict)
    labels: np.ndarray | None = None  # region-sized labels at the processing level, if asked
    pixel_size_um: float | None = None  # at the processing level, when the slide records it
    size: SizeEstimate | None = None  # the slide's nucleus-size estimate, when one was made
    n_pending: int = 0  # chunks left to other shards (then no outputs yet)


@dataclass(frozen=True)
class SlidePlan:
    """Everything a process needs to segment any chunk of a slide and assemble the result."""

    path: Path
    stem: str
    level: int
    downsample: float
    scale: float  # resampling of the processed level for the segmenter
    tiles: list[SlideTile]
    pixel_um: float | None  # at the processed level, when the slide records it
    parts: Path
    outputs: dict[str, Path]
    mask: tuple[Any, float] | None  # tissue mask and its downsample, or None for no mask
    size: SizeEstimate | None = None

    def needs_work(self, tile: SlideTile) -> bool:
        """Whether the chunk has no part yet and holds tissue (or there is no mask)."""
        return not has_part(self.parts, tile) and self.has_tissue(tile)

    def has_tissue(self, tile: SlideTile) -> bool:
        return self.mask is None or tile_has_tissue(self.mask[0], self.mask[1], *tile.bounds0)


def _chunk_nuclei(seg: Segmenter, raw: np.ndarray, tile: SlideTile, scale: float,
                  pixel_um: float | None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Segment one chunk (8-bit RGB as read); keep nuclei centred in its core; level-0
    polygons and rows (intensities in the slide's own 0-255 units, as for images)."""
    res = seg.segment(_to_float(raw), tile.id, scale=scale, normalized=True)
    labels = res.labels
    rows, cols = tile.core_slices
    keep = np.zeros(int(labels.max()) + 1, bool)
    if labels.any():
        ids = np.arange(1, len(keep))
        ys, xs = np.nonzero(labels)
        n = np.bincount(labels[ys, xs], minlength=len(keep))[1:]
        cy = np.bincount(labels[ys, xs], weights=ys, minlength=len(keep))[1:] / np.maximum(n, 1)
        cx = np.bincount(labels[ys, xs], weights=xs, minlength=len(keep))[1:] / np.maximum(n, 1)
        inside = (n > 0) & (cy >= rows.start) & (cy < rows.stop) & (cx >= cols.start) & \
            (cx < cols.stop)
        keep[ids[inside]] = True
    kept = np.where(keep[labels], labels, 0)
    ds = tile.downsample
    polys = dict(label_shapes(kept, offset=(tile.x, tile.y)))
    meas = {r["id"]: r for r in measure_nuclei(kept, raw, res.scores, pixel_um,
                                               offset=(tile.x, tile.y))}
    out = []
    for label, shape in polys.items():
        row = dict(meas[label])
        x0, y0 = cast(float, row["centroid_x"]), cast(float, row["centroid_y"])
        row["centroid_x"] = (x0 + 0.5) * ds - 0.5  # level-0 pixels
        row["centroid_y"] = (y0 + 0.5) * ds - 0.5
        scaled = [[(ring * ds).tolist() for ring in polygon] for polygon in shape]
        out.append({"shape": scaled, "row": row, "score": res.scores.get(label)})
    return out, kept


def plan_slide(
    seg: Segmenter,
    path: str | Path,
    out_dir: str | Path,
    options: SlideOptions | None = None,
    *,
    save_geojson: bool = True,
    save_csv: bool = True,
    overwrite: bool = False,
    scale: float | ScaleRequest | None = None,
    stem: str | None = None,
) -> SlidePlan:
    """Level, scale, chunk grid, tissue mask and resume folder of a slide (see
    :func:`segment_slide` for the arguments). The same arguments give the same plan in any
    process, so shards and workers agree on the chunks."""
    opts = options or SlideOptions()
    level, region = opts.level, opts.region
    path, out_dir = Path(path), Path(out_dir)
    stem = path.stem if stem is None else stem
    outputs = output_paths(out_dir, stem, [k for k, on in (("geojson", save_geojson),
                                                            ("csv", save_csv)) if on])
    for p in outputs.values():
        check_writable(p, overwrite)
    request = ScaleRequest.of(scale)
    with open_slide(path) as slide:
        cfg = seg.config
        if level is not None and not 0 <= level < slide.level_count:
            raise InputError(f"{slide.path}: level {level} does not exist (the slide has "
                             f"{slide.level_count} levels, 0..{slide.level_count - 1})")
        request = dataclasses.replace(request, file_pixel_size=slide.mpp)
        lvl, res_scale, given = slide_scale(cfg, request, level, slide.level_downsamples,
                                            slide.best_level_for_downsample)
        ds = float(slide.level_downsamples[lvl])
        chunk, overlap = fit_chunk(slide.dimensions, region, ds, opts.chunk, opts.overlap)
        tiles = slide_tiles(slide.dimensions, chunk, overlap, region, downsample=ds)
        pixel_um = None if slide.mpp is None else slide.mpp * ds
        mask = _tissue(slide, path) if opts.tissue else None
        if mask is not None and not any(tile_has_tissue(mask[0], mask[1], *t.bounds0)
                                        for t in tiles):  # a blank slide: 0 nuclei, said
            where = "in the region" if region else "on the slide"
            log.warning("%s: no tissue found %s by the thumbnail tissue mask, so no nuclei; "
                        "for fluorescence or unusual stains pass --no-tissue-mask", path, where)
        size = None
        if given.scale is None and level is None and not auto_scale_off(seg) and \
                cfg.nucleus_diameter:
            size = _slide_size(seg, slide, tiles, mask, lvl)  # once per slide, not per chunk
            res_scale = size.scale
        manifest = {"slide": str(path.resolve()), "dimensions": list(slide.dimensions),
                    "level": lvl, "scale": res_scale, "chunk": chunk, "overlap": overlap,
                    "region": list(region) if region else None,
                    "model": {k: v for k, v in cfg.to_dict().items() if k != "training"}}
    parts = open_parts(out_dir / f"{stem}{PARTS_SUFFIX}", manifest, overwrite)
    return SlidePlan(path, stem, lvl, ds, res_scale, tiles, pixel_um, parts, outputs, mask,
                     size)


def _tissue(slide: Any, path: Path) -> Any:
    """The slide's tissue mask, or an error that says how to do without it: it reads the
    whole slide's thumbnail, so one corrupt tile anywhere stops it, even for a region far
    from that tile."""
    try:
        return slide_tissue_mask(slide)
    except Exception as exc:  # readers raise many types for damaged tiles
        raise InputError(f"{path}: cannot read the slide's thumbnail for the tissue mask "
                         f"({exc}); --no-tissue-mask segments without it, reading only the "
                         "chunks (with --region, only those near it)") from exc


def segment_chunk(seg: Segmenter, plan: SlidePlan, tile: SlideTile, slide: Any = None
                  ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One chunk's nuclei (level-0 polygons and rows) and its kept labels; opens the slide
    unless an open ``slide`` is passed. Pure: writes nothing."""
    if slide is None:
        with open_slide(plan.path) as opened:
            return segment_chunk(seg, plan, tile, opened)
    raw = slide.read_region(*tile.location, tile.size, tile.size, level=plan.level)
    return _chunk_nuclei(seg, raw, tile, plan.scale, plan.pixel_um)


def finish_slide(plan: SlidePlan, overwrite: bool = False) -> int | None:
    """Assemble the final files once every chunk has a part; ``None`` if another process
    did (or is doing) it."""
    return assemble(plan.tiles, plan.parts, plan.outputs, plan.stem, plan.pixel_um, overwrite)


def segment_slide(
    seg: Segmenter,
    path: str | Path,
    out_dir: str | Path,
    options: SlideOptions | None = None,
    *,
    save_geojson: bool = True,
    save_csv: bool = True,
    return_labels: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    scale: float | ScaleRequest | None = None,
    stem: str | None = None,
    on_chunk: Callable[[SlideTile, str], None] | None = None,
    select: Callable[[SlideTile], bool] | None = None,
    **changes: Any,
) -> SlideResult:
    """Segment a whole slide (or ``region`` x, y, w, h in level-0 pixels); see the module
    docstring. Writes ``<stem>.geojson`` and ``<stem>_nuclei.csv`` into ``out_dir`` (``stem``:
    the slide file's, unless given). ``options``: level, region, chunk grid and tissue mask
    (:class:`SlideOptions`); ``changes``: some of them by name, over ``options``.

    ``on_chunk(tile, status)`` hears of each chunk once it is settled: ``"done"`` (segmented
    and its part written), ``"no tissue"`` or ``"resumed"`` (its part was already there); an
    exception it raises stops the run as an interruption would, and a rerun resumes.

    ``select(tile)``, when given, limits this process to the chunks it accepts (a shard of a
    job array); the files are assembled by whichever process finds every part present, and
    until then the result lists ``n_pending`` chunks and no outputs."""
    from tqdm import tqdm

    if select is not None and return_labels:
        raise ConfigError("a label image of a slide needs every chunk in one process; "
                          "leave out --slide-labels when the chunks are split over shards")
    opts = (options or SlideOptions()).replace(**changes)
    t0 = time.perf_counter()
    plan = plan_slide(seg, path, out_dir, opts, save_geojson=save_geojson,
                      save_csv=save_csv, overwrite=overwrite, scale=scale, stem=stem)
    tiles = plan.tiles
    labels = region_canvas(tiles) if return_labels else None
    skipped = resumed = next_id = 0
    mine = tiles if select is None else [t for t in tiles if select(t)]
    with open_slide(plan.path) as slide:
        for tile in tqdm(mine, disable=not progress, unit="chunk", desc=plan.path.name):
            if labels is None and has_part(plan.parts, tile):
                resumed += 1
                status = "resumed"
            elif not plan.has_tissue(tile):
                skipped += 1
                status = "no tissue"
                write_part(plan.parts, tile, [], status)
            else:
                nuclei, kept = segment_chunk(seg, plan, tile, slide)
                if labels is not None:
                    next_id = paste_chunk(labels, kept, tile, tiles[0], next_id)
                status = "done"
                write_part(plan.parts, tile, nuclei, status)
            if on_chunk is not None:
                on_chunk(tile, status)
    pending = len(missing_parts(plan.parts, tiles))
    n = 0 if pending else finish_slide(plan, overwrite)
    outputs = plan.outputs if not pending and n is not None else {}
    if labels is not None:
        labels = relabel_sequential(labels)
    return SlideResult(n or 0, len(tiles), skipped, resumed, time.perf_counter() - t0,
                       plan.level, plan.downsample, outputs, labels, plan.pixel_um, plan.size,
                       pending)


def merge_parts(parts: str | Path, overwrite: bool = False) -> tuple[int, dict[str, Path]]:
    """Assemble a slide's GeoJSON and CSV from its resume folder ``<stem>.sac-parts`` alone
    (``sac merge-slide``), for shards that each left their parts; returns (nuclei, files)."""
    import json

    parts = Path(parts)
    mpath = parts / "manifest.json"
    if not mpath.is_file():
        raise InputError(f"{parts}: not a slide's parts folder (no manifest.json); pass the "
                         f"<stem>{PARTS_SUFFIX} folder that sac segment --shard left")
    try:
        m = json.loads(mpath.read_text())
        where, level = str(m["slide"]), int(m["level"])
        width, height = (int(v) for v in m["dimensions"])
        dims, chunk, overlap = (width, height), int(m["chunk"]), int(m["overlap"])
        region = None
        if m["region"]:
            x, y, w, h = (int(v) for v in m["region"])
            region = (x, y, w, h)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError) as exc:
        raise InputError(f"{mpath}: damaged manifest ({type(exc).__name__}: {exc}); run sac "
                         "segment on the slide again with --overwrite to start it anew") from exc
    with open_slide(where) as slide:
        if not 0 <= level < len(slide.level_downsamples):
            raise InputError(f"{mpath}: level {level} is not a level of {where}; run sac "
                             "segment on the slide again with --overwrite")
        ds = float(slide.level_downsamples[level])
        pixel_um = None if slide.mpp is None else slide.mpp * ds
        tiles = slide_tiles(dims, chunk, overlap, region, downsample=ds)
    stem = parts.name[: -len(PARTS_SUFFIX)] if parts.name.endswith(PARTS_SUFFIX) else parts.name
    outputs = output_paths(parts.parent, stem, ["geojson", "csv"])
    for p in outputs.values():
        check_writable(p, overwrite)
    n = assemble(tiles, parts, outputs, stem, pixel_um, overwrite)
    if n is None:
        raise InputError(f"{parts}: another process is assembling this slide (or did; remove "
                         f"{parts / 'assemble.lock'} if it was interrupted)")
    return n, outputs


def fit_chunk(dimensions: tuple[int, int], region: tuple[int, int, int, int] | None,
              downsample: float, chunk: int, overlap: int) -> tuple[int, int]:
    """Chunk side and overlap for a slide or region: no chunk larger than the area itself
    (rounded up to 64 px), and an overlap below half the chunk."""
    _, _, w, h = check_region(dimensions, region)
    extent = math.ceil(max(w, h) / downsample)
    side = max(64, min(chunk, -(-extent // 64) * 64))
    return side, min(overlap, side // 2 - 1)


def _slide_size(seg: Segmenter, slide: Any, tiles: list[SlideTile], mask: Any, lvl: int,
                samples: int = SIZE_SAMPLES) -> SizeEstimate:
    """One scale for a whole slide of unknown pixel size: the median of the automatic scales
    of up to ``samples`` evenly spaced tissue chunks (every chunk then uses it, so nuclei on
    chunk seams are segmented alike)."""
    with_tissue = [t for t in tiles if mask is None or tile_has_tissue(mask[0], mask[1],
                                                                      *t.bounds0)]
    picked = with_tissue[:: max(1, len(with_tissue) // samples)][:samples]
    found = []
    for tile in picked:
        raw = slide.read_region(*tile.location, tile.size, tile.size, level=lvl)
        est = choose_scale(seg, _to_float(raw), ScaleRequest())[2]
        if est.diameter is not None:
            found.append(est)
    if not found:
        return SizeEstimate(None, 0, seg.config.input_scale, "model",
                            f"no size estimate from {len(picked)} sampled chunk(s)")
    found.sort(key=lambda e: e.scale)
    mid = found[len(found) // 2]
    return SizeEstimate(mid.diameter, sum(e.objects for e in found), mid.scale, "estimated",
                        f"median of {len(found)} sampled chunk(s)")


def _to_float(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0).astype(np.float32)


def region_canvas(tiles: list[SlideTile]) -> np.ndarray:
    x0 = min(t.core[0] for t in tiles)
    y0 = min(t.core[1] for t in tiles)
    x1 = max(t.core[2] for t in tiles)
    y1 = max(t.core[3] for t in tiles)
    if (x1 - x0) * (y1 - y0) > MAX_REGION_LABEL_PIXELS:
        raise InputError("a label image is only made for regions up to 400 megapixels; pass "
                         "--region, or use the GeoJSON/CSV outputs")
    return np.zeros((y1 - y0, x1 - x0), np.uint32)


def paste_chunk(canvas: np.ndarray, kept: np.ndarray, tile: SlideTile, first: SlideTile,
           base: int) -> int:
    """Add a chunk's kept nuclei to the region label image, ids offset by ``base`` to stay
    unique (the canvas is renumbered at the end); returns the next chunk's offset, so the
    canvas is never scanned."""
    ox, oy = first.core[0], first.core[1]
    ys, xs = np.nonzero(kept)
    gy, gx = ys + tile.y - oy, xs + tile.x - ox
    ok = (gy >= 0) & (gx >= 0) & (gy < canvas.shape[0]) & (gx < canvas.shape[1])
    free = canvas[gy[ok], gx[ok]] == 0
    canvas[gy[ok][free], gx[ok][free]] = kept[ys[ok][free], xs[ok][free]] + base
    return base + int(kept.max(initial=0))
