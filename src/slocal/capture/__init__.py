"""From a video or a folder of photos to a COLMAP scene (``slocal map``).

Modules, one per step: ``video`` (PyAV decoding and encoding, frames sampled by
time and sharpness), ``photos`` (photo folders, EXIF focal lengths, camera
groups), ``retrieval`` (bag of visual words over SIFT descriptors), ``pairs``
(which image pairs to match), ``sfm`` (pycolmap: features, matching,
reconstruction), ``scale`` (metres per model unit), ``mapper`` (``map_scene``:
the whole run, written atomically under a lock).

This package sits at the data level: it imports the base modules and
``slocal.data`` only. Its ``__init__`` imports nothing, so ``slocal.data.synth``
can use ``capture.video`` without loading the rest.
"""
