"""The napari plugin: segment, correct by clicking, export, and a sample image.

Declared by the npe2 manifest ``napari.yaml`` (entry point ``napari.manifest``); the widgets use
qtpy, so any Qt binding napari supports will do. Install with
``pip install 'segment-any-cell[napari]'``. The work behind the widgets lives in
:mod:`sac.gui.session` (no Qt), the widgets in :mod:`sac.gui.segment_widget`,
:mod:`sac.gui.correct_widget` and :mod:`sac.gui.export_widget`.
"""
