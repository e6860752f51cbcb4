"""Shared test fixtures: paths to the real data and DUSt3R fixtures beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers.rooms_home import make_tiny_home

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SLOCAL_SHARED", REPO.parent / "shared"))
SEVEN_SCENES_MINI = SHARED / "data" / "7scenes-mini"
DUST3R_FIXTURES = SHARED / "fixtures" / "dust3r"


# Fixtures that read ../shared/data: a test using one must carry the ``realdata`` marker.
SHARED_DATA_FIXTURES = ("seven_scenes_mini",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that reads the shared data without the ``realdata`` marker (``-m "not realdata"``
    must leave out every such test); skip the tests marked ``cuda`` where torch sees no CUDA device."""
    unmarked = [
        item.nodeid
        for item in items
        if set(SHARED_DATA_FIXTURES) & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("realdata") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests reading ../shared/data without @pytest.mark.realdata: {', '.join(unmarked)}")
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


def _write_matrix(path: Path, M) -> None:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in row) for row in M) + "\n")


def write_tiny_twelve_scenes(
    root: Path, n_query: int = 2, n_mapping: int = 4, size=(64, 48), depth_size=(32, 24)
) -> Path:
    """A minimal valid 12Scenes folder: fronto-parallel plane at 2 m, cameras moving along x.

    Colour and depth have different resolutions (same optical centre), as in the real data.
    """
    import cv2
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir()
    (w, h), (dw, dh) = size, depth_size
    f = 0.9 * w
    Kc = [[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    Kd = [[f * dw / w, 0, dw / 2, 0], [0, f * dh / h, dh / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    flat = lambda M: " ".join(f"{v:g}" for row in M for v in row)  # noqa: E731
    rng = np.random.default_rng(0)
    n = n_query + n_mapping
    for i in range(n):
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        _write_matrix(data / f"frame-{i:06d}.pose.txt", T)
        cv2.imwrite(str(data / f"frame-{i:06d}.color.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(data / f"frame-{i:06d}.depth.png"), np.full((dh, dw), 2000, np.uint16))
    (root / "info.txt").write_text(
        "m_versionNumber = 4\nm_sensorName = test\n"
        f"m_colorWidth = {w}\nm_colorHeight = {h}\nm_depthWidth = {dw}\nm_depthHeight = {dh}\nm_depthShift = 1000\n"
        f"m_calibrationColorIntrinsic = {flat(Kc)}\nm_calibrationDepthIntrinsic = {flat(Kd)}\n"
        f"m_frames.size = {n}\n"
    )
    (root / "split.txt").write_text(
        f"sequence0 [frames={n_query}]  [start=0 ; end={n_query - 1}]\n"
        f"sequence1 [frames={n_mapping}]  [start={n_query} ; end={n - 1}]\n"
    )
    return root


@pytest.fixture
def tiny_twelve_scenes(tmp_path: Path) -> Path:
    """Data root holding ``apt0/tiny``, a minimal 12Scenes scene (2 queries, 4 mapping frames)."""
    write_tiny_twelve_scenes(tmp_path / "data" / "apt0" / "tiny")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, runs folder) of ``home``: two tiny synth rooms with tiny ace students (``rooms_home``)."""
    return make_tiny_home(tmp_path_factory.mktemp("home"))
