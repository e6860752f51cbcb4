"""Localization: student correspondences -> poselib PnP-RANSAC -> ``cam_from_world``.

PnP itself lives in ``slocal.geometry.pnp`` (distill's validation uses it too).
"""

from slocal.distill.config_files import default_model_path
from slocal.localize.localizer import Localization, Localizer, fit_camera_to_image, load_model

__all__ = ["Localization", "Localizer", "default_model_path", "fit_camera_to_image", "load_model"]
