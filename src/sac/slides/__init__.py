"""Whole-slide images: region reading (OpenSlide, tiffslide, tifffile), tissue masks, tile grids.

The reader interface is :mod:`sac.slides.reader`, its backends :mod:`sac.slides.tiff` and
:mod:`sac.slides.vendor`, and :func:`open_slide` (:mod:`sac.slides.open`) picks one; the tissue
mask is in :mod:`sac.slides.tissue`, the chunk layout with owned cores in :mod:`sac.slides.grid`,
and segmenting a whole slide chunk by chunk in :mod:`sac.slides.segment` (not imported here, so
that reading slides needs no torch). OpenSlide and tiffslide are optional:
``pip install 'segment-any-cell[wsi]'``.
"""

from sac.slides.grid import SlideTile, check_region, slide_tiles
from sac.slides.open import open_slide
from sac.slides.reader import ArraySlide, SlideReader
from sac.slides.tissue import slide_tissue_mask, tile_has_tissue, tissue_mask

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
