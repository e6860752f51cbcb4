"""Localization: student correspondences -> poselib PnP-RANSAC -> ``cam_from_world``.

PnP itself lives in ``slocal.geometry.pnp`` (distill's validation uses it too);
it is re-exported here for the localizer's users.
"""

from slocal.geometry.pnp import PnpConfig, PnpResult, poselib_camera, solve_pnp
from slocal.localize.localizer import Localization, Localizer, default_model_path, fit_camera_to_image, load_model

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
