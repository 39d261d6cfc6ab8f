"""MkDocs hook: the File formats page's tables are generated from the code that reads and
writes the files (the output kinds registry, the CSV columns, the accepted suffixes), so the
page cannot drift from them (``docs/formats.md`` holds the markers it replaces)."""

from __future__ import annotations

from typing import Any

MARKERS = ("<!-- sac-output-kinds -->", "<!-- sac-csv-columns -->", "<!-- sac-input-suffixes -->")


def output_kinds() -> str:
    """One row per output kind of :data:`sac.outputs.kinds.KINDS`."""
    from sac.outputs.kinds import KINDS

    rows = ["| file | holds | flag | whole slides | napari Export |", "|---|---|---|---|---|"]
    for name, kind in KINDS.items():
        flag = "always" if name == "labels" else f"`--save-{name}`"
        if name == "labels":
            flag += " (slides: `--slide-labels`)"
        rows.append(f"| `<stem>{kind.ending}` | {kind.what} | {flag} | "
                    f"{'yes' if kind.slide else 'no'} | {'yes' if kind.gui_export else 'no'} |")
    return "\n".join(rows)


def csv_columns() -> str:
    """The per-nucleus table's columns, in order."""
    from sac.outputs.table import CSV_COLUMNS

    return ", ".join(f"`{c}`" for c in CSV_COLUMNS)


def input_suffixes() -> str:
    """The file endings read as images and as whole slides."""
    from sac.data.images import IMAGE_SUFFIXES, SLIDE_SUFFIXES

    images = ", ".join(f"`{s}`" for s in IMAGE_SUFFIXES)
    slides = ", ".join(f"`{s}`" for s in SLIDE_SUFFIXES)
    return f"- images: {images}\n- whole slides: {slides} (and pyramidal TIFF with `--wsi`)"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    for marker, make in zip(MARKERS, (output_kinds, csv_columns, input_suffixes), strict=True):
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
