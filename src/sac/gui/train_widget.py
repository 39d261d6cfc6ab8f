"""The Train widget: fine-tune a model on the nuclei corrected in the viewer.

Every Labels layer with a matching Image layer (the one a Segment run recorded, or the only
image of the same size) is a training pair; tick the ones to learn from, pick the model to
start from, and Train. The few-shot schedule of ``sac train --from`` runs off the GUI thread
with a progress bar, an estimate of the time left and a Cancel button; the new model joins
every model list of the plugin at once, ready to segment the next image.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QWidget,
)

from sac.core.device import PRECISIONS
from sac.gui import session
from sac.gui.segment_widget import fill_combo, follow_layers, image_for, layer_image

#: where fine-tuned models go unless the user names a folder
DEFAULT_ROOT = Path.home() / "sac-models"


class _Signals(QObject):
    progress = Signal(int, int)


def training_pairs(viewer: Any) -> dict[str, str]:
    """Labels layer name -> the name of its Image layer (:func:`image_for`), for every Labels
    layer that has one (semantic masks left out)."""
    import napari

    pairs = {}
    for ly in viewer.layers:
        if isinstance(ly, napari.layers.Labels) and not ly.metadata.get("sac_semantic"):
            image = image_for(viewer, ly)
            if image is not None:
                pairs[ly.name] = image
    return pairs


class TrainWidget(QWidget):
    """Fine-tune on the viewer's image/labels pairs (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.pairs = QListWidget()
        self.base = QComboBox()
        self.base.addItems([n for n in session.shipped_names() if n != "auto"])
        if "sac-lite-nuclei" in session.shipped_names():
            self.base.setCurrentText("sac-lite-nuclei")  # the generalist: any image type
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.folder = QLineEdit("")
        self.folder.setPlaceholderText(f"default: {DEFAULT_ROOT}/<model>-<date>")
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout(self)
        form.addRow("train on", self.pairs)
        form.addRow("start from", self.base)
        form.addRow("precision", self.precision)
        form.addRow("save to", self.folder)
        form.addRow(buttons)
        form.addRow(self.bar)
        form.addRow(self.status)
        self._signals = _Signals()
        self._signals.progress.connect(self._on_progress)
        self._cancel = threading.Event()
        self.worker: Any = None
        self.busy = False
        self.model_dir: Path | None = None  # the last model trained
        self._started = 0.0
        session.MODEL_LISTENERS.append(self._on_new_model)
        follow_layers(self.viewer, self._refresh)

    def _refresh(self, *_: Any) -> None:
        ticked = {p for p, _ in self.chosen()}
        self.pairs.clear()
        for labels, image in training_pairs(self.viewer).items():
            item = QListWidgetItem(f"{labels}  ({image})")
            item.setData(Qt.UserRole, (labels, image))
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if labels in ticked or not ticked else Qt.Unchecked)
            self.pairs.addItem(item)

    def chosen(self) -> list[tuple[str, str]]:
        """The ticked (labels, image) layer pairs."""
        items = [self.pairs.item(i) for i in range(self.pairs.count())]
        return [it.data(Qt.UserRole) for it in items if it.checkState() == Qt.Checked]

    def _on_new_model(self, folder: str) -> None:
        fill_combo(self.base, [*[self.base.itemText(i) for i in range(self.base.count())
                                 if self.base.itemText(i) != folder], folder])

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(done)
        spent = time.perf_counter() - self._started
        left = spent / max(done, 1) * (total - done)
        self.status.setText(f"step {done}/{total}, about {left / 60:.1f} min left")

    # --- running -------------------------------------------------------------------------
    def train(self) -> None:
        """Fine-tune on the ticked pairs in a worker thread."""
        from napari.qt.threading import create_worker

        chosen = self.chosen()
        if not chosen:
            self.status.setText("tick at least one labels layer (segment and correct an "
                                "image first, or paint one)")
            return
        pairs = [(layer_image(self.viewer.layers[image]),
                  np.asarray(self.viewer.layers[labels].data)) for labels, image in chosen]
        base = self.base.currentText()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(self.folder.text()) if self.folder.text() else \
            DEFAULT_ROOT / f"{Path(base).name}-{stamp}"
        if run_dir.exists() and any(run_dir.iterdir()):
            self.status.setText(f"{run_dir} is not empty; choose a new folder")
            return
        precision = self.precision.currentText()
        self._cancel.clear()
        emit = self._signals.progress.emit

        def work() -> Path | None:
            try:
                return session.fine_tune(pairs, base, run_dir, self._cancel, emit,
                                         precision=precision)
            except session.Cancelled:
                return None

        self.busy = True
        self._started = time.perf_counter()
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"training on {len(pairs)} image(s) from {base}…")
        self.worker = create_worker(work)
        self.worker.returned.connect(self._trained)
        self.worker.errored.connect(lambda exc: self.status.setText(f"error: {exc}"))
        self.worker.finished.connect(self._done)
        self.worker.start()

    def cancel(self) -> None:
        """Stop training at its next step; no model is added."""
        self._cancel.set()
        self.status.setText("cancelling…")

    def _done(self) -> None:
        self.busy = False
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _trained(self, model_dir: Path | None) -> None:
        if model_dir is None:
            self.status.setText("cancelled: no model added")
            return
        self.model_dir = model_dir
        session.add_trained(str(model_dir))
        minutes = (time.perf_counter() - self._started) / 60
        self.status.setText(f"trained in {minutes:.1f} min: {model_dir} (now in the model "
                            "lists)")
