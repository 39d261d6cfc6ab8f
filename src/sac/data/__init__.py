"""Dataset readers: MoNuSeg, DSB 2018, generic folders, plus deterministic train/val splits.

Every reader is a lazy :class:`SampleDataset`: creating it only lists files; ``ds[i]`` (or
``ds["name"]``) reads one :class:`Sample` with an RGB uint8 ``image`` and a uint32 instance
``labels`` image (0 = background). Normalisation rules are in :mod:`sac.data.images`.
"""

from sac.core.images import to_rgb_uint8
from sac.data.base import Item, Problem, Sample, SampleDataset
from sac.data.dsb2018 import DSB2018Dataset, combine_masks
from sac.data.folders import FolderDataset
from sac.data.images import (
    IMAGE_SUFFIXES,
    as_label_image,
    check_same_size,
    read_image,
    read_labels,
    read_rgb,
)
from sac.data.monuseg import (
    MoNuSegDataset,
    Region,
    parse_aperio_xml,
    rasterize_regions,
    read_aperio_xml,
)
from sac.data.open import FORMATS, open_dataset, resolve_split, train_val_names
from sac.data.splits import (
    BUILTIN_SPLITS,
    Split,
    classify_dsb,
    dsb_image_type,
    load_builtin_split,
    monuseg_organ,
    read_split,
    split_dsb,
    split_monuseg,
    split_monuseg_organs,
    stratified_split,
    write_split,
)

__all__ = [
    "BUILTIN_SPLITS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "DSB2018Dataset",
    "FolderDataset",
    "Item",
    "MoNuSegDataset",
    "Problem",
    "Region",
    "Sample",
    "SampleDataset",
    "Split",
    "as_label_image",
    "check_same_size",
    "classify_dsb",
    "combine_masks",
    "dsb_image_type",
    "load_builtin_split",
    "monuseg_organ",
    "open_dataset",
    "parse_aperio_xml",
    "rasterize_regions",
    "read_aperio_xml",
    "read_image",
    "read_labels",
    "read_rgb",
    "read_split",
    "resolve_split",
    "split_dsb",
    "split_monuseg",
    "split_monuseg_organs",
    "stratified_split",
    "to_rgb_uint8",
    "train_val_names",
    "write_split",
]
