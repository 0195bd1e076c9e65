"""Dataset readers: every supported folder layout becomes one manifest (paper Sec. II-A).

Layouts (found anywhere under the folder given to :func:`index_dataset`, several at once)::

    QaTa-COV19-v1/{Images, Ground-truths}                  Ground-truths/mask_X.png pairs with Images/X.png
    QaTa-COV19-v2/{Train Set, Test Set}/{Images, Ground-truths}           split = train / test
    Control_Group/Control_Group_I/                          normal CXRs: control, group I
    Control_Group/Control_Group_II/{CHESTXRAY-14/{Train,Test}, Pediatric_Bacterial_Pneumonia,
                                    Pediatric_Viral_Pneumonia}          control, group II
    COVID-QU-Ex: Infection Segmentation Data/[Infection Segmentation Data/]{Train,Val,Test}/
                 {COVID-19,Non-COVID,Normal}/{images, infection masks, lung masks}/NAME.png

Any dataset folder may also carry ``Lung-masks/`` (lung masks at the images' relative paths) and
``phantom-metadata.csv`` (columns ``image`` (relative path), ``finding``, ``source``); both are looked
up in the image's folder and every folder above it, the nearest winning. ChestX-ray14 findings also
come from ``Data_Entry_2017.csv`` ("Image Index", "Finding Labels") found the same way.

Every image is checked cheaply (header, PNG checksums, DICOM header) and every mask decoded once
(size, binary values). Problems never stop the indexing: the file is skipped with a reason or kept
with a warning, both returned in :class:`IndexResult`.

Modules: :mod:`~cxrmap.data.readers.layouts` (finding and indexing the layouts), one per layout
(:mod:`~cxrmap.data.readers.qata`, :mod:`~cxrmap.data.readers.covid_qu_ex`,
:mod:`~cxrmap.data.readers.control_groups`, :mod:`~cxrmap.data.readers.chestxray14`), plain folders
(:mod:`~cxrmap.data.readers.folder`), the checks (:mod:`~cxrmap.data.readers.checks`) and what they share
(:mod:`~cxrmap.data.readers.common`).
"""

from cxrmap.data.readers.common import (
    MASK_FOLDER_NAMES,
    UNSUPPORTED_IMAGE_SUFFIXES,
    FileList,
    IndexResult,
    child_folder,
    list_images,
    pair_masks,
)
from cxrmap.data.readers.folder import index_files, index_folder_pair
from cxrmap.data.readers.layouts import LAYOUTS, find_layouts, index_dataset, infection_folders

__all__ = [
    "LAYOUTS",
    "MASK_FOLDER_NAMES",
    "UNSUPPORTED_IMAGE_SUFFIXES",
    "FileList",
    "IndexResult",
    "child_folder",
    "find_layouts",
    "index_dataset",
    "index_files",
    "index_folder_pair",
    "infection_folders",
    "list_images",
    "pair_masks",
]
