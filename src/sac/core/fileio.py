"""Safe output files: write to a temporary name in the same folder, then rename into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sac.core.errors import InputError


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``overwrite`` is set; a folder where the
    output file goes is refused either way, by its path."""
    if path.is_dir():
        raise InputError(f"{path} is a folder where an output file goes; move or rename it "
                         "(--overwrite replaces files, never folders)")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")


def check_output_folder(folder: Path) -> None:
    """Make sure outputs can be written into ``folder`` (created if missing) before any work,
    so that a wrong ``-o`` fails at once, not after the first image has been segmented."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {folder} is a file; choose a folder for -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sac-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write into the output folder {folder}: "
                         f"{exc.strerror or exc}; choose another folder for -o") from None


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    On any error the temporary file is removed, so no half-written output is ever left.
    """
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name must fit the file system's 255 bytes where the final one does
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; use the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_stems(paths: list[Path]) -> dict[Path, str]:
    """The name each input's outputs start with: its stem, unless another input shares it.

    Inputs sharing a stem (``a.png``, ``a.tif``) get their file name (``a.png``, ``a.tif``);
    inputs sharing the file name too (``x/img.tif``, ``y/img.tif``) get the folders that tell
    them apart, joined by ``_`` (``x_img.tif``, ``y_img.tif``). Names compare ignoring case, as
    on macOS and Windows. Raises :class:`InputError` before any work when no rule separates
    two inputs, so no output is ever written twice.
    """
    def key(name: str) -> str:
        return name.casefold()

    resolved = {p: p.resolve() for p in paths}
    stems: dict[Path, str] = {p: p.stem for p in paths}
    for depth in range(0, 64):
        groups: dict[str, list[Path]] = {}
        for p, s in stems.items():
            groups.setdefault(key(s), []).append(p)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return stems
        for group in clashes:
            for p in group:
                parts = resolved[p].parts[1:]  # without the root
                stems[p] = "_".join(parts[len(parts) - depth - 1:]) if depth else p.name
    first = next(g for g in groups.values() if len(g) > 1)
    raise InputError(f"inputs {', '.join(str(p) for p in first)} would write outputs of the "
                     "same name; rename one of them or segment them into different -o folders")


