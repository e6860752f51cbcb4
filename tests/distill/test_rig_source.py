"""``--depth-registration``'s sources: a mode, a rig file, the rig a model file records."""

import json

import numpy as np
import pytest
import torch

from helpers.distill_fixtures import TINY_STUDENT
from slocal.data.rig import DepthRegistration
from slocal.distill.model_file import load_student, read_model_payload, save_student
from slocal.distill.rig_source import model_depth_registration, resolve_depth_registration
from slocal.distill.students import build_student
from slocal.errors import SlocalError
from slocal.geometry import Camera

CAM_FROM_DEPTH = np.eye(4)
CAM_FROM_DEPTH[:3, 3] = [0.0065, -0.0041, 0.0289]
RIG = DepthRegistration(CAM_FROM_DEPTH, 0.9641, "depth", "estimated")


@pytest.fixture
def model_path(tmp_path):
    """A tiny student's model file that records ``RIG``."""
    path = tmp_path / "model.pt"
    net = build_student(TINY_STUDENT, (64, 48)).eval()
    save_student(
        path,
        net,
        scene_id="kitchen",
        scene_fingerprint="abc123",
        centre=np.zeros(3),
        image_size=(64, 48),
        camera=Camera(64, 48, 52.0, 52.0, 32.0, 24.0),
        teacher="depth",
        train={},
        depth_registration=RIG.summary(),
    )
    return path


def test_the_rig_a_model_was_taught_through_is_what_depth_registration_names(model_path, tmp_path):
    path = model_path
    assert model_depth_registration(path).same_as(RIG)
    # The modes pass through; a model file or a rig file gives its rig.
    assert [resolve_depth_registration(m) for m in ("auto", "estimate", "off")] == ["auto", "estimate", "off"]
    assert resolve_depth_registration(str(path)).same_as(RIG)
    rig_file = tmp_path / "rig.json"
    rig_file.write_text(json.dumps(RIG.to_dict()))
    assert resolve_depth_registration(str(rig_file)).same_as(RIG)
    with pytest.raises(SlocalError, match=r"sometimes: file not found \(a depth registration is auto, estimate, off"):
        resolve_depth_registration("sometimes")
    # A model of a scene without a rig (or written before the record) has none to give.
    bare = tmp_path / "bare.pt"
    payload = read_model_payload(path)
    del payload["depth_registration"]
    torch.save(payload, bare)
    assert load_student(bare).depth_registration is None
    with pytest.raises(SlocalError, match="records no colour-depth rig") as info:
        resolve_depth_registration(str(bare))
    assert info.value.path == bare
    with pytest.raises(SlocalError, match="another version of scene") as info:
        load_student(bare, expect_fingerprint="fff")
    assert str(info.value).endswith("distill it again")
