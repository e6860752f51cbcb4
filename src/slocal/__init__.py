"""slocal: visual localization with small scene-specific students distilled from 3D teachers.

Pipeline, one subpackage per step::

    data      scenes (12Scenes, 7-Scenes, COLMAP, procedural synth)
    teach     teachers -> per-pixel world-frame scene coordinates (depth, fused, sfm, dust3r)
    distill   students (timm CNN / ViT) trained on the teacher targets
    localize  student correspondences -> poselib PnP-RANSAC -> cam_from_world
    bench     pose-error and runtime tables against ground truth and baselines
"""

from slocal.errors import SlocalError

__version__ = "0.1.0"
__all__ = ["SlocalError", "__version__"]
