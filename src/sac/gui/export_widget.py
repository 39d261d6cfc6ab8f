"""The Export widget: a Labels layer to the files ``sac segment`` writes (label TIFF, QuPath
GeoJSON, ImageJ ROIs, per-nucleus CSV), through the same writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from sac.gui import session
from sac.gui.segment_widget import fill_combo, follow_layers, image_layers, layer_image
from sac.outputs.kinds import KINDS as OUTPUT_KINDS

#: what the widget offers: the output kinds that describe a layer's nuclei, by GUI label
KINDS = {k: kind.label for k, kind in OUTPUT_KINDS.items() if kind.gui_export}


class ExportWidget(QWidget):
    """Write the chosen Labels layer (and measure it on the chosen image) to a folder."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.labels = QComboBox()
        self.image = QComboBox()
        self.folder = QLineEdit(str(Path.cwd() / "sac_export"))
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.stem = QLineEdit("")
        self.pixel = QDoubleSpinBox()
        self.pixel.setRange(0.0, 100.0)
        self.pixel.setDecimals(4)
        self.pixel.setSpecialValueText("unknown")
        self.kinds = {k: QCheckBox(text) for k, text in KINDS.items()}
        for box in self.kinds.values():
            box.setChecked(True)
        self.overwrite = QCheckBox("replace existing files")
        button = QPushButton("Export")
        button.clicked.connect(self.export)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("nuclei", self.labels)
        form.addRow("image (for the CSV)", self.image)
        form.addRow("folder", folder_row)
        form.addRow("file name stem", self.stem)
        form.addRow("pixel size (um)", self.pixel)
        for box in self.kinds.values():
            form.addRow("", box)
        form.addRow("", self.overwrite)
        form.addRow(button)
        form.addRow(self.status)
        follow_layers(self.viewer, self._refresh)

    def _refresh(self, *_: Any) -> None:
        import napari

        fill_combo(self.labels, [ly.name for ly in self.viewer.layers
                                 if isinstance(ly, napari.layers.Labels)])
        fill_combo(self.image, ["(none)", *[ly.name for ly in image_layers(self.viewer)]])

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder")
        if folder:
            self.folder.setText(folder)

    def export(self) -> list[Path]:
        """Write the files; the status line lists them, or says what went wrong."""
        from sac.core.errors import SACError

        name = self.labels.currentText()
        if not name:
            self.status.setText("no Labels layer to export")
            return []
        layer = self.viewer.layers[name]
        img_name = self.image.currentText()
        image = layer_image(self.viewer.layers[img_name]) if img_name in self.viewer.layers \
            else None
        stem = self.stem.text().strip() or name.replace(" ", "_")
        kinds = [k for k, box in self.kinds.items() if box.isChecked()]
        scores = layer.metadata.get("sac", {}).get("scores", {})
        try:
            files = session.export(layer.data, image, Path(self.folder.text()), stem, kinds,
                                   self.pixel.value() or None, self.overwrite.isChecked(),
                                   scores)
        except (SACError, OSError) as exc:
            self.status.setText(f"not exported: {exc}")
            return []
        self.status.setText("wrote " + ", ".join(p.name for p in files))
        return files
