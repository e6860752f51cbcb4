import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.student_standin import random_pose
from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry import rotmat_to_qvec
from slocal_cli.main import app


def _line(name, cam_from_world, f):
    q, t = rotmat_to_qvec(cam_from_world[:3, :3]), cam_from_world[:3, 3]
    return f"{name} " + " ".join(f"{v:.12g}" for v in (*q, *t, f))


def test_pose_file_replaces_poses_and_focal_and_drops_unlisted_frames(tiny_twelve_scenes, tmp_path):
    base = load_scene(tiny_twelve_scenes, "apt0/tiny")
    listed = [f.name for f in base.query + base.mapping][:-1]  # the last mapping frame is not listed
    poses = {name: random_pose(i) for i, name in enumerate(listed)}
    pgt = tmp_path / "pgt_train.txt"
    pgt.write_text("\n".join(_line(f"{n}.color.jpg", T, 40.0 + i) for i, (n, T) in enumerate(poses.items())) + "\n")
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny", pose_files=[pgt])
    frames = scene.query + scene.mapping
    assert [f.name for f in frames] == listed and scene.skipped == base.skipped + 1
    for i, f in enumerate(frames):
        np.testing.assert_allclose(f.cam_from_world, poses[f.name], atol=1e-9)
        assert f.camera.fx == f.camera.fy == 40.0 + i and f.camera.cx == base.frame(f.name).camera.cx
        assert f.depth_camera == base.frame(f.name).depth_camera
    assert scene.fingerprint != base.fingerprint


@pytest.mark.parametrize(
    "text, needle",
    [
        (
            "frame-000000.color.jpg 1 0 0 0 0 0 0 500\nframe-999999.color.jpg 1 0 0 0 0 0 0 500\n",
            "line 2: frame 'frame-999999' is not in scene apt0/tiny",
        ),
        ("frame-000000.color.jpg 1 0 0 0 0 0 0\n", "line 1: expected 'name qw qx qy qz tx ty tz f'"),
        ("\nframe-000000.color.jpg 1 0 0 0 0 0 nan 500\n", "line 2: non-finite pose"),
        ("frame-000000.color.jpg 0 0 0 0 0 0 0 500\n", "line 1: invalid quaternion"),
        (
            "frame-000000.color.jpg 1 0 0 0 0 0 0 500\nframe-000000.color.jpg 1 0 0 0 0 0 0 500\n",
            "line 2: frame frame-000000.color.jpg is listed twice",
        ),
    ],
)
def test_bad_pose_file_names_file_and_line(tiny_twelve_scenes, tmp_path, text, needle):
    pgt = tmp_path / "pgt.txt"
    pgt.write_text(text)
    with pytest.raises(SlocalError, match="pgt.txt: " + needle.replace("(", r"\(")):
        load_scene(tiny_twelve_scenes, "apt0/tiny", pose_files=[pgt])
    r = CliRunner().invoke(
        app,
        [
            "teach",
            "--scene",
            "apt0/tiny",
            "--poses",
            str(pgt),
            "--data-root",
            str(tiny_twelve_scenes),
            "--runs",
            str(tmp_path / "runs"),
        ],
    )
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and needle.split(":")[0] in lines[0] and "pgt.txt" in lines[0], r.stderr
