"""Whole-slide images: region reading (OpenSlide, tiffslide, tifffile), tissue masks, tile grids.

The readers are in :mod:`sac.wsi.reader` (:func:`open_slide`), the tissue mask in
:mod:`sac.wsi.tissue`, the tile layout with owned cores in :mod:`sac.wsi.grid`. OpenSlide and
tiffslide are optional: ``pip install 'segment-any-cell[wsi]'``.
"""

from sac.wsi.grid import SlideTile, check_region, slide_tiles
from sac.wsi.reader import ArraySlide, SlideReader, open_slide
from sac.wsi.tissue import slide_tissue_mask, tile_has_tissue, tissue_mask

__all__ = [
    "ArraySlide",
    "SlideReader",
    "SlideTile",
    "check_region",
    "open_slide",
    "slide_tiles",
    "slide_tissue_mask",
    "tile_has_tissue",
    "tissue_mask",
]
