"""The Segment widget: a model, an Image layer and options in; a Labels layer of nuclei out
(optionally the semantic mask and the prompts SAC chose), computed off the GUI thread with a
progress bar and a Cancel button."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from sac.core.device import PRECISIONS
from sac.core.tiles import MAX_ENCODER_TILE
from sac.gui import session


class _Signals(QObject):
    progress = Signal(str, int, int)


def image_layers(viewer: Any) -> list[Any]:
    import napari

    return [ly for ly in viewer.layers if isinstance(ly, napari.layers.Image)]


def fill_combo(box: QComboBox, names: list[str]) -> None:
    """Replace a combo box's items, keeping the current choice when it is still there."""
    current = box.currentText()
    box.clear()
    box.addItems(names)
    if current in names:
        box.setCurrentText(current)


def follow_layers(viewer: Any, refresh: Any) -> None:
    """Call ``refresh`` now and whenever layers are added or removed."""
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
        ev.connect(refresh)
    refresh()


def image_for(viewer: Any, labels: Any) -> str | None:
    """The Image layer a Labels layer belongs to: the one a Segment run recorded, else the
    only (single-scale) image of the same size; None when there is no such layer."""
    named = labels.metadata.get("sac", {}).get("image")
    if named in viewer.layers:
        return str(named)
    shape = np.asarray(labels.data).shape[:2]
    same = [im.name for im in image_layers(viewer)
            if not im.multiscale and layer_image(im).shape[:2] == shape]
    return same[0] if len(same) == 1 else None


def layer_image(layer: Any) -> np.ndarray:
    """The layer's pixels as an array SAC reads: (H, W) or (H, W, 3|4); a multiscale layer
    gives its finest level."""
    data = layer.data[0] if layer.multiscale else layer.data
    return np.asarray(data)


class SegmentWidget(QWidget):
    """Segment the chosen Image layer with a SAC model (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image = QComboBox()
        self.model = QComboBox()
        self.model.addItems(session.shipped_names())
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.0, 20.0)
        self.scale.setSingleStep(0.05)
        self.scale.setSpecialValueText("automatic")
        self.pixel = QDoubleSpinBox()
        self.pixel.setRange(0.0, 100.0)
        self.pixel.setDecimals(4)
        self.pixel.setSingleStep(0.05)
        self.pixel.setSpecialValueText("unknown")
        self.tile = QSpinBox()
        self.tile.setRange(0, MAX_ENCODER_TILE)
        self.tile.setSpecialValueText("default")
        self.precision = QComboBox()  # auto: bf16 only where the CPU computes it natively
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("auto: bf16 where the CPU has native bf16 (AVX512-BF16/AMX) "
                                  "or on a GPU, else fp32; bf16 is several times slower on "
                                  "CPUs without it")
        self.no_fill = QCheckBox("no completion from the semantic mask")
        self.device = QComboBox()
        self.device.addItems(self._devices())
        self.semantic = QCheckBox("semantic mask")
        self.prompts = QCheckBox("prompt points")
        self.run_button = QPushButton("Segment")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout(self)
        form.addRow("image", self.image)
        form.addRow("model", model_row)
        form.addRow("scale", self.scale)
        form.addRow("pixel size (um)", self.pixel)
        form.addRow("tile size", self.tile)
        form.addRow("device", self.device)
        form.addRow("precision", self.precision)
        form.addRow("", self.no_fill)
        form.addRow("also add", self.semantic)
        form.addRow("", self.prompts)
        form.addRow(buttons)
        form.addRow(self.bar)
        form.addRow(self.status)
        self._signals = _Signals()
        self._signals.progress.connect(self._on_progress)
        self._cancel = threading.Event()
        self.worker: Any = None
        self.busy = False
        session.MODEL_LISTENERS.append(self.model.addItem)  # models the Train widget makes
        follow_layers(self.viewer, self._refresh)

    # --- widgets -------------------------------------------------------------------------
    @staticmethod
    def _devices() -> list[str]:
        import torch

        return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

    def _refresh(self, *_: Any) -> None:
        fill_combo(self.image, [ly.name for ly in image_layers(self.viewer)])

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "SAC model folder")
        if folder:
            self.model.addItem(folder)
            self.model.setCurrentText(folder)

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(done)
        self.status.setText(f"{stage} {done}/{total}")

    # --- running -------------------------------------------------------------------------
    def run(self) -> None:
        """Start segmenting the chosen layer in a worker thread."""
        from napari.qt.threading import create_worker

        name = self.image.currentText()
        if not name:
            self.status.setText("add an image layer first")
            return
        layer = self.viewer.layers[name]
        region = None
        if layer.multiscale:  # a whole slide: the drawn rectangle or what is on screen
            from sac.gui.slides import region_of

            try:
                x, y, w, h = region_of(layer, self.viewer)
            except ValueError as exc:
                self.status.setText(str(exc))
                return
            region = (y, x, h, w)
            image = np.asarray(layer.data[0][y : y + h, x : x + w])
        else:
            image = layer_image(layer)
        opts: dict[str, Any] = {
            "model": self.model.currentText(), "device": self.device.currentText(),
            "precision": self.precision.currentText(), "tile_size": self.tile.value() or None,
            "fill": not self.no_fill.isChecked()}
        scale = self.scale.value() or None
        pixel = self.pixel.value() or None
        file_pixel = layer.metadata.get("sac_mpp")
        semantic, prompts = self.semantic.isChecked(), self.prompts.isChecked()
        self._cancel.clear()
        emit = self._signals.progress.emit

        def work() -> session.SegmentOutput | None:
            seg = session.segmenter(**opts)
            try:
                return session.segment(seg, image, scale, semantic, prompts, self._cancel,
                                       emit, pixel, file_pixel)
            except session.Cancelled:
                return None  # nothing to add

        self.busy = True
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("loading the model…")
        self.worker = create_worker(work)
        self.worker.returned.connect(lambda out: self._add_layers(name, opts, out, region))
        self.worker.errored.connect(self._on_error)  # e.g. a pixel size the model cannot use
        self.worker.finished.connect(self._done)
        self.worker.start()

    def cancel(self) -> None:
        """Stop the run at its next step; no layer is added."""
        self._cancel.set()
        self.status.setText("cancelling…")

    def _done(self) -> None:
        self.busy = False
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_error(self, exc: BaseException) -> None:
        self.status.setText(f"error: {exc}")

    def _add_layers(self, name: str, opts: dict[str, Any], out: session.SegmentOutput | None,
                    region: tuple[int, int, int, int] | None = None) -> None:
        """Add (or replace) the result layers, all at once, when the run is complete."""
        if out is None:
            self.status.setText("cancelled: nothing added")
            return
        place: dict[str, Any] = {}
        at = np.array(region[:2] if region else (0, 0), float)
        if name in self.viewer.layers:  # results sit where the image (region) sits
            src = self.viewer.layers[name]
            scale = np.asarray(src.scale[-2:])
            place = {"scale": scale, "translate": np.asarray(src.translate[-2:]) + at * scale}
        used = {"model": out.model} if out.model else {}  # auto: the model it chose
        meta = {"sac": {**opts, **used, "scale": out.scale, "image": name,
                        "scores": out.scores, "region": region}}
        self._put(f"{name} nuclei", out.labels, "labels", meta, place)
        if out.semantic is not None:
            self._put(f"{name} semantic", out.semantic.astype(np.uint8), "labels",
                      {"sac_semantic": True}, place)
        if self.prompts.isChecked():
            pts = np.concatenate([out.positives, out.negatives])
            colours = ["lime"] * len(out.positives) + ["magenta"] * len(out.negatives)
            self._put(f"{name} prompts", pts, "points", {}, {**place, "face_color": colours,
                                                              "size": 5})
        n = len(np.unique(out.labels)) - 1
        by = f", model {out.model}" if out.model else ""
        self.status.setText(f"{n} nuclei (scale {out.scale:.3g}{by})")

    def _put(self, layer_name: str, data: np.ndarray, kind: str, meta: dict[str, Any],
             kwargs: dict[str, Any]) -> None:
        if layer_name in self.viewer.layers:
            self.viewer.layers.remove(layer_name)
        add = self.viewer.add_labels if kind == "labels" else self.viewer.add_points
        add(data, name=layer_name, metadata=meta, **kwargs)
