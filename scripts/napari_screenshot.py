"""The README's screenshot of the napari plugin, taken from the real widgets and viewer.

Run on a (virtual) screen: ``xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python
scripts/napari_screenshot.py``. Opens the IHC sample, docks the three widgets, segments with
``sac-lite-monuseg`` (completion off, as the demo does for this IHC image), makes a few
corrective clicks and saves ``docs/napari_plugin.jpg`` (shrunk to 1200 px wide, JPEG, so the
repository carries about 140 kB rather than a 750 kB PNG).
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from sac.gui.correct_widget import CorrectWidget
from sac.gui.export_widget import ExportWidget
from sac.gui.segment_widget import SegmentWidget
from sac.gui.session import ihc_sample_data

OUT = Path(__file__).resolve().parents[1] / "docs" / "napari_plugin.jpg"
WIDTH = 1200


def wait(until, timeout: float = 300) -> None:
    t0 = time.time()
    while not until():
        QApplication.processEvents()
        time.sleep(0.05)
        if time.time() - t0 > timeout:
            raise TimeoutError


def main() -> None:
    viewer = napari.Viewer(title="Segment Any Cell")
    viewer.window.resize(1600, 1000)
    [(image, meta, _)] = ihc_sample_data()
    viewer.add_image(image, rgb=True, **meta)
    seg = SegmentWidget(viewer)
    cor = CorrectWidget(viewer)
    exp = ExportWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment", area="right")
    viewer.window.add_dock_widget(cor, name="Correct by clicking", area="right")
    viewer.window.add_dock_widget(exp, name="Export", area="right", tabify=True)
    seg.model.setCurrentText("sac-lite-monuseg")
    seg.no_fill.setChecked(True)
    seg.run()
    wait(lambda: not seg.busy)
    cor.labels.setCurrentText("IHC sample nuclei")
    cor.start()
    wait(lambda: cor.ready)
    labels = viewer.layers["IHC sample nuclei"].data
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    big = ids[np.argsort(counts)[-1]]  # a negative click on the largest nucleus
    rows, cols = np.nonzero(labels == big)
    cor.set_mode(False)
    cor.clicks.add([rows.mean(), cols.mean()])
    blue = image[..., 2].astype(float) - image[..., 0]  # haematoxylin-rich, unlabelled
    blue[labels > 0] = -1e9
    cor.set_mode(True)
    for _ in range(3):
        r, c = np.unravel_index(int(np.argmax(blue)), blue.shape)
        cor.clicks.add([r, c])
        blue[max(r - 25, 0):r + 25, max(c - 25, 0):c + 25] = -1e9
    viewer.layers.selection.active = cor.clicks
    cor.parentWidget().raise_()  # the Correct tab in front of Export
    QApplication.processEvents()
    from PIL import Image

    shot = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).convert("RGB")
    shot = shot.resize((WIDTH, round(shot.height * WIDTH / shot.width)), Image.LANCZOS)
    OUT.parent.mkdir(exist_ok=True)
    shot.save(OUT, quality=80, optimize=True)
    print(f"wrote {OUT}: {cor.status.text()}")
    viewer.close()


if __name__ == "__main__":
    main()
