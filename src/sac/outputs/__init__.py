"""Writing results: label TIFF and PNG overlays, polygons (QuPath GeoJSON, ImageJ ROIs) and the
per-nucleus table."""
