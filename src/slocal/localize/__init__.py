"""Localization: student correspondences -> poselib PnP-RANSAC -> ``cam_from_world``."""

from slocal.localize.pnp import PnpConfig, PnpResult, poselib_camera, solve_pnp

__all__ = ["PnpConfig", "PnpResult", "poselib_camera", "solve_pnp"]
