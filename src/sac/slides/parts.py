"""A slide's finished chunks on disk: the resume folder, its parts, and the final assembly.

Each finished chunk's nuclei (level-0 polygons and measurement rows) go to
``<out>/<stem>.sac-parts/<chunk id>.json``, written atomically, so whatever stops a run (an
interruption, a dead worker, a shard that has not run yet) leaves only whole parts behind. A
manifest records the settings the parts were made with; a run with other settings is refused
rather than mixed in. Several processes may share one folder (shards of a job array, Dask's
client): creating it is idempotent, and the assembly of the final GeoJSON and CSV is taken by
exactly one of them through an exclusive lock file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sac.core.errors import InputError
from sac.core.fileio import atomic_path
from sac.outputs.geojson import nucleus_feature, write_feature_collection
from sac.outputs.table import CSV_COLUMNS, write_csv
from sac.slides.grid import SlideTile

log = logging.getLogger("sac.slides")
PARTS_SUFFIX = ".sac-parts"
PARTS_FORMAT = 2
LOCK = "assemble.lock"


def open_parts(parts: Path, manifest: dict[str, Any], overwrite: bool) -> Path:
    """The resume folder ``parts``, created if needed and checked against ``manifest``.

    An existing folder of the same settings is reused (its parts are resumed); one of other
    settings is refused unless ``overwrite``, which starts it again.
    """
    mpath = parts / "manifest.json"
    want = json.loads(json.dumps({"parts_format": PARTS_FORMAT, **manifest}))
    if mpath.is_file():
        try:
            found = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if not overwrite:
                raise InputError(f"{mpath}: the resume folder's manifest is damaged ({exc}); "
                                 f"delete the folder {parts} or pass --overwrite to start the "
                                 "slide again") from exc
            found = None
        if found == want:
            return parts
        if not overwrite:
            raise InputError(f"{parts} holds a run of {Path(manifest['slide']).name} with "
                             "other settings or another model; pass --overwrite to start "
                             "again")
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)  # another process may be creating it too
    with atomic_path(mpath, overwrite=True) as tmp:
        tmp.write_text(json.dumps(want, indent=1))
    return parts


def part_path(parts: Path, tile: SlideTile) -> Path:
    return parts / f"{tile.id}.json"


def write_part(parts: Path, tile: SlideTile, nuclei: list[dict[str, Any]], status: str
               ) -> None:
    """One chunk's nuclei, atomically (a part on disk is always whole)."""
    with atomic_path(part_path(parts, tile), overwrite=True) as tmp:
        tmp.write_text(json.dumps({"status": status, "nuclei": nuclei}))


def read_part(path: Path) -> list[dict[str, Any]]:
    """The nuclei of a part file; :class:`InputError` naming it when it is damaged
    (truncated or not a part: an interrupted copy, a full disk, a hand edit)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: damaged slide part ({exc}); delete it and run again to "
                         "recompute that chunk") from exc
    nuclei = doc.get("nuclei") if isinstance(doc, dict) else None
    if not isinstance(nuclei, list) or not all(
            isinstance(n, dict) and isinstance(n.get("row"), dict) and "shape" in n
            and "area_px" in n["row"] and "score" in n for n in nuclei):
        raise InputError(f"{path}: damaged slide part (not the nuclei records SAC writes); "
                         "delete it and run again to recompute that chunk")
    return nuclei


def has_part(parts: Path, tile: SlideTile) -> bool:
    """Whether the chunk has a whole part; a damaged one is removed (with a warning) so that
    the chunk is computed again."""
    path = part_path(parts, tile)
    if not path.is_file():
        return False
    try:
        read_part(path)
    except InputError as exc:
        log.warning("%s", str(exc).replace("delete it and run again to recompute",
                                           "removed; recomputing"))
        path.unlink(missing_ok=True)
        return False
    return True


def missing_parts(parts: Path, tiles: list[SlideTile]) -> list[SlideTile]:
    """The chunks without a part file yet. Existence only: a run validates each part once,
    where it decides to resume it (:func:`has_part`), and :func:`read_part` names a damaged
    one at assembly, so parts are not read whole once more here."""
    return [t for t in tiles if not part_path(parts, t).is_file()]


def _read_parts(tiles: list[SlideTile], parts: Path) -> Iterator[dict[str, Any]]:
    for tile in tiles:
        yield from read_part(part_path(parts, tile))


def assemble(tiles: list[SlideTile], parts: Path, outputs: dict[str, Path], stem: str,
             pixel_um: float | None, overwrite: bool) -> int | None:
    """Write the final files from a complete set of parts and remove the folder; returns the
    number of nuclei, or ``None`` when another process holds the assembly (or has done it).

    Nuclei are numbered 1..N in chunk order, whoever assembles, so the files are the same for
    any split of the work. The GeoJSON is streamed; the CSV rows are kept until it is written.
    """
    absent = missing_parts(parts, tiles)
    if absent:
        raise InputError(f"{parts}: {len(absent)} of {len(tiles)} chunk(s) have no part yet "
                         f"(first: {absent[0].id}); run the remaining shard(s) first")
    try:
        fd = os.open(parts / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    except FileNotFoundError:  # the folder is gone: another process assembled it
        return None
    os.close(fd)
    rows: list[dict[str, Any]] = []
    count = 0

    def features() -> Iterator[dict[str, Any]]:
        nonlocal count
        for i, n in enumerate(_read_parts(tiles, parts), start=1):
            count = i
            if "csv" in outputs:
                rows.append({k: (i if k == "id" else n["row"].get(k)) for k in CSV_COLUMNS})
            yield nucleus_feature(i, n["shape"], n["row"]["area_px"], pixel_um, n["score"],
                                  stem)

    try:
        if "geojson" in outputs:
            write_feature_collection(outputs["geojson"], features(), overwrite)
        else:
            for _ in features():
                pass
        if "csv" in outputs:
            write_csv(outputs["csv"], rows, overwrite)
    except BaseException:
        (parts / LOCK).unlink(missing_ok=True)  # let a rerun assemble
        raise
    shutil.rmtree(parts)  # only needed to resume an unfinished run
    return count
