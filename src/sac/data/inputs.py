"""The images and slides a command is given: files, folders and glob patterns."""

from __future__ import annotations

import glob
from pathlib import Path

from sac.data.images import IMAGE_SUFFIXES, SLIDE_SUFFIXES

#: what a folder is searched for
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *SLIDE_SUFFIXES)


def expand_inputs(inputs: list[str], skip: tuple[str, ...] = ()
                  ) -> tuple[list[Path], list[str], int]:
    """Image files named by ``inputs`` (files, folders, globs), the inputs matching none, and
    how many files in named folders were left out for ending in one of ``skip`` (SAC's own
    image outputs, :data:`sac.outputs.kinds.IMAGE_ENDINGS`; name such a file itself to
    segment it). A file named twice (also through a link) is listed once, under its first
    name."""
    files: list[Path] = []
    missing: list[str] = []
    ignored = 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                found = sorted(p for p in path.iterdir()
                               if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
            except OSError as exc:  # unreadable folder: reported as missing, with why
                missing.append(f"{item} (cannot list the folder: {exc.strerror or exc})")
                continue
            ours = [p for p in found if skip and p.name.lower().endswith(skip)]
            ignored += len(ours)
            found = [p for p in found if p not in ours]
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
        if not found:
            missing.append(item)
        files.extend(found)
    by_target = {p.resolve(): p for p in reversed(files)}  # one entry per file, first name kept
    unique = [p for p in dict.fromkeys(files) if by_target[p.resolve()] is p]
    return unique, missing, ignored
