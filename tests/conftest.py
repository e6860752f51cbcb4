"""Shared test fixtures: paths to the real data and DUSt3R fixtures beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SLOCAL_SHARED", REPO.parent / "shared"))
SEVEN_SCENES_MINI = SHARED / "data" / "7scenes-mini"
DUST3R_FIXTURES = SHARED / "fixtures" / "dust3r"


@pytest.fixture(scope="session")
def seven_scenes_mini() -> Path:
    """Root of ../shared/data/7scenes-mini; skips the test when absent."""
    if not (SEVEN_SCENES_MINI / "redkitchen").is_dir():
        pytest.skip(f"real data not available at {SEVEN_SCENES_MINI}")
    return SEVEN_SCENES_MINI


@pytest.fixture(scope="session")
def dust3r_fixtures() -> Path:
    """The DUSt3R reference fixtures folder; skips the test when absent."""
    if not (DUST3R_FIXTURES / "small_linear_state_dict.pt").is_file():
        pytest.skip(f"DUSt3R fixtures not available at {DUST3R_FIXTURES}")
    return DUST3R_FIXTURES
