"""The Correct widget: clicks on a Points layer edit a Labels layer of nuclei.

"Start" adds a Points layer of clicks over the chosen Labels layer. Each new point is a
positive click (adds the nucleus under it, or splits it off the merged nucleus it lies in) or
a negative one (removes the nucleus under it, or trims a wrong part;
:mod:`sac.pipeline.interactive`); press ``p`` or ``n`` on the clicks layer (or use the mode
box) to switch. Positive clicks are green, negative ones magenta. SAM's
embedding of each tile is kept, so clicks after the first in a region take a fraction of a
second.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from sac.gui import session
from sac.gui.segment_widget import fill_combo, follow_layers, image_for, layer_image

COLOURS = {True: "lime", False: "magenta"}


class CorrectWidget(QWidget):
    """Click-to-correct on a Labels layer made by the Segment widget (or any other)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.labels = QComboBox()
        self.model = QComboBox()
        self.model.addItems(session.shipped_names())
        self.mode = QComboBox()
        self.mode.addItems(["positive (p)", "negative (n)"])
        start = QPushButton("Start")
        start.clicked.connect(self.start)
        refine = QPushButton("Refine labels layer")
        refine.setToolTip("SAM's outline for every nucleus of the layer (from SAC or any "
                          "other tool), ids kept, as a new layer '<name> refined'")
        refine.clicked.connect(self.refine)
        self.repair = QCheckBox("repair")
        self.repair.setChecked(True)
        self.repair.setToolTip("before refining, split merged nuclei, join fragments and drop "
                               "objects with no nucleus, as the model's own detections say; "
                               "untick to refine the outlines of exactly the layer's objects")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("nuclei", self.labels)
        form.addRow("model", self.model)
        form.addRow("click mode", self.mode)
        form.addRow(start)
        form.addRow(refine, self.repair)
        form.addRow(self.status)
        self.corrector: Any = None
        self.ready = False  # the image's embedding is computed
        self.clicks: Any = None
        self.refining = False
        self.target: Any = None
        self._seen = 0
        session.MODEL_LISTENERS.append(self.model.addItem)  # models the Train widget makes
        follow_layers(self.viewer, self._refresh)

    @property
    def positive(self) -> bool:
        return self.mode.currentIndex() == 0

    def set_mode(self, positive: bool) -> None:
        self.mode.setCurrentIndex(0 if positive else 1)

    def _refresh(self, *_: Any) -> None:
        import napari

        fill_combo(self.labels, [ly.name for ly in self.viewer.layers
                                 if isinstance(ly, napari.layers.Labels)])

    def start(self) -> None:
        """Set up the corrector for the chosen Labels layer and add the clicks layer."""
        from sac.pipeline.interactive import Corrector

        name = self.labels.currentText()
        if not name:
            self.status.setText("segment an image first (or add a Labels layer)")
            return
        self.target = self.viewer.layers[name]
        meta = self.target.metadata.get("sac", {})
        image_name = meta.get("image", name.removesuffix(" nuclei"))
        if image_name not in self.viewer.layers:
            self.status.setText(f"the image layer {image_name!r} is not in the viewer")
            return
        model = meta.get("model", self.model.currentText())
        seg = session.segmenter(model, meta.get("device", "cpu"),
                                meta.get("precision", "auto"),
                                meta.get("tile_size"), meta.get("fill", True))
        source = self.viewer.layers[image_name]
        region = meta.get("region")
        if region is not None:  # a region of a whole slide (y, x, h, w at level 0)
            y, x, h, w = region
            image = np.asarray(source.data[0][y : y + h, x : x + w])
        else:
            image = layer_image(source)
        seg, _ = session.concrete(seg, image)  # auto: the specialist for this image
        self.corrector = Corrector(seg, image, np.asarray(self.target.data),
                                   meta.get("scale"))
        self.ready = False
        clicks_name = f"{name} clicks"
        if clicks_name in self.viewer.layers:
            self.viewer.layers.remove(clicks_name)
        self.clicks = self.viewer.add_points(
            np.zeros((0, 2)), name=clicks_name, size=6, scale=self.target.scale[-2:],
            translate=self.target.translate[-2:])
        self._seen = 0
        self.clicks.events.data.connect(self._on_points)
        self.clicks.bind_key("p", lambda _: self.set_mode(True), overwrite=True)
        self.clicks.bind_key("n", lambda _: self.set_mode(False), overwrite=True)
        self.clicks.mode = "add"
        self.viewer.layers.selection.active = self.clicks
        self.status.setText("embedding the image (clicks meanwhile wait)…")
        from napari.qt.threading import create_worker

        # once per image, off the GUI thread; then every click runs the mask decoder only
        self.worker = create_worker(self.corrector.embed_all)
        self.worker.finished.connect(self._embedded)
        self.worker.start()

    def _embedded(self) -> None:
        self.ready = True
        self.status.setText("click on the image: p = add a nucleus, n = remove one")
        self._on_points()  # clicks made while embedding

    def _on_points(self, event: Any = None) -> None:
        """Handle the points added since the last call (one per click)."""
        if not self.ready:
            return
        data = np.asarray(self.clicks.data)
        if len(data) < self._seen:  # points were deleted: only new ones count
            self._seen = len(data)
            return
        colours = np.asarray(self.clicks.face_color).copy()
        for i in range(self._seen, len(data)):
            self.click(float(data[i, -1]), float(data[i, -2]), self.positive)
            if i < len(colours):
                from napari.utils.colormaps.standardize_color import transform_color

                colours[i] = transform_color(COLOURS[self.positive])[0]
        self._seen = len(data)
        if len(colours):
            self.clicks.face_color = colours

    def click(self, x: float, y: float, positive: bool) -> int:
        """Apply one click (layer data coordinates) and update the Labels layer; returns
        the nucleus id added or removed (0: nothing changed)."""
        try:
            k = self.corrector.add(x, y) if positive else self.corrector.remove(x, y)
        except ValueError as exc:  # outside the image
            self.status.setText(str(exc))
            return 0
        self.target.data = self.corrector.labels.copy()
        what = "added" if positive else "removed or trimmed"
        self.status.setText(f"nucleus {k} {what}" if k else "no nucleus found there")
        return k

    def refine(self) -> None:
        """Refine the chosen Labels layer with SAM off the GUI thread; the result is added as
        ``<name> refined`` (the layer itself is left as it is)."""
        from napari.qt.threading import create_worker

        name = self.labels.currentText()
        if not name:
            self.status.setText("choose a labels layer to refine")
            return
        target = self.viewer.layers[name]
        image_name = image_for(self.viewer, target)
        if image_name is None:
            self.status.setText(f"no image layer of the size of {name!r} to refine it on")
            return
        meta = target.metadata.get("sac", {})
        model = meta.get("model", self.model.currentText())
        image = layer_image(self.viewer.layers[image_name])
        labels = np.asarray(target.data)
        repair = self.repair.isChecked()

        def work() -> tuple[np.ndarray, str]:
            seg = session.segmenter(model, meta.get("device", "cpu"),
                                    meta.get("precision", "auto"), meta.get("tile_size"))
            return session.refine(seg, image, labels, repair)

        def done(out: tuple[np.ndarray, str]) -> None:
            new = f"{name} refined"
            if new in self.viewer.layers:
                self.viewer.layers.remove(new)
            self.viewer.add_labels(out[0], name=new, scale=target.scale[-2:],
                                   translate=target.translate[-2:],
                                   metadata={"sac": {**meta, "model": model,
                                                     "image": image_name}})
            self.status.setText(f"refined: {out[1]}")

        self.refining = True
        self.status.setText(f"refining {name} with {model}…")
        self.worker = create_worker(work)
        self.worker.returned.connect(done)
        self.worker.errored.connect(lambda exc: self.status.setText(f"error: {exc}"))
        self.worker.finished.connect(lambda: setattr(self, "refining", False))
        self.worker.start()
