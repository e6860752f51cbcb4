"""``DepthRegistration`` records: a summary rebuilds the rig, rig files are read with errors that name them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.data.rig import DepthRegistration, read_depth_registration
from slocal.errors import SlocalError

CAM_FROM_DEPTH = np.eye(4)
CAM_FROM_DEPTH[:3, :3] = Rotation.from_rotvec(np.radians([0.3, -1.1, 0.2])).as_matrix()
CAM_FROM_DEPTH[:3, 3] = [0.012, 0.034, -0.021]
RIG = DepthRegistration(CAM_FROM_DEPTH, 0.9641, "depth", "estimated", {"after": {"median_px": 2.1}})


def test_a_summary_rebuilds_the_rig_it_reports():
    summary = json.loads(json.dumps(RIG.summary()))  # as a model file or a report stores it
    assert summary["depth_from_colour_translation_cm"] == pytest.approx([1.2, 3.4, -2.1])
    again = DepthRegistration.from_dict(summary)
    np.testing.assert_allclose(again.cam_from_depth, CAM_FROM_DEPTH, rtol=0, atol=1e-15)
    assert again.depth_scale == 0.9641 and again.poses_of == "depth" and again.source == "estimated"
    assert again.same_as(RIG)


def test_same_as_tells_rigs_apart():
    moved = CAM_FROM_DEPTH.copy()
    moved[0, 3] += 1e-4
    assert not RIG.same_as(DepthRegistration(moved, 0.9641, "depth"))
    assert not RIG.same_as(DepthRegistration(CAM_FROM_DEPTH, 0.9642, "depth"))
    assert not RIG.same_as(DepthRegistration(CAM_FROM_DEPTH, 0.9641, "colour"))
    assert RIG.same_as(DepthRegistration(CAM_FROM_DEPTH.copy(), 0.9641, "depth", "file x.json"))


def test_a_cached_rig_file_is_read(tmp_path):
    path = tmp_path / "depth-0123456789.json"
    path.write_text(json.dumps(RIG.to_dict()))
    rig = read_depth_registration(path)
    assert rig.same_as(RIG) and rig.source == "file depth-0123456789.json"
    assert rig.stats == {"after": {"median_px": 2.1}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("[1, 2]", "expected a JSON object"),
        ('{"depth_scale": 1.0, "poses_of": "depth"}', "needs cam_from_depth"),
        ('{"cam_from_depth": [[1, 0], [0, 1]], "depth_scale": 1.0, "poses_of": "depth"}', "not a rigid transform"),
        ('{"cam_from_depth": "eye", "depth_scale": 1.0, "poses_of": "depth"}', "malformed colour-depth rig"),
        (json.dumps({**RIG.to_dict(), "depth_scale": 3.0}), "depth scale must be within"),
    ],
)
def test_a_bad_rig_file_names_itself(tmp_path, content, message):
    path = tmp_path / "rig.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SlocalError, match=message) as info:
        read_depth_registration(path)
    assert info.value.path == path
