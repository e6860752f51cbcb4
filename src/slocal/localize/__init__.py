"""Localization: student correspondences -> poselib PnP-RANSAC -> ``cam_from_world``."""

from slocal.localize.localizer import Localization, Localizer, default_model_path, fit_camera_to_image, load_model
from slocal.localize.pnp import PnpConfig, PnpResult, poselib_camera, solve_pnp

__all__ = [
    "Localization",
    "Localizer",
    "PnpConfig",
    "PnpResult",
    "default_model_path",
    "fit_camera_to_image",
    "load_model",
    "poselib_camera",
    "solve_pnp",
]
