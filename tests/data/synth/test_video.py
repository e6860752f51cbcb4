import numpy as np
import pytest

from slocal.capture.video import open_video
from slocal.data.synth import SynthConfig, SynthWorld
from slocal.data.synth.video import poses_path, read_video_poses, render_video, walk_poses
from slocal.errors import SlocalError

SMALL = SynthConfig(color_size=(96, 72), depth_size=(48, 36), focal=78.0, seed=1, texels_per_metre=60.0)


def test_walk_is_a_smooth_closed_loop_and_the_query_path_differs():
    poses = walk_poses(SMALL, 200)
    centres = np.array([p[:3, 3] for p in poses])
    steps = np.linalg.norm(np.diff(np.vstack([centres, centres[:1]]), axis=0), axis=1)
    assert steps.max() < 2.0 * np.median(steps)  # even speed, and the last frame leads back to the first
    forward = np.array([p[:3, 2] for p in poses])
    turn = np.degrees(np.arccos(np.clip(np.sum(forward * np.roll(forward, -1, axis=0), axis=1), -1, 1)))
    assert turn.max() < 6.0  # no jump in viewing direction over the loop (200 frames)
    queries = np.array([p[:3, 3] for p in walk_poses(SMALL, 200, "queries")])
    assert np.min(np.linalg.norm(queries[:, None] - centres[None], axis=2), axis=1).mean() > 0.2
    with pytest.raises(SlocalError, match="unknown video path"):
        walk_poses(SMALL, 10, "random")


def test_render_video_writes_the_frames_and_their_true_poses(tmp_path):
    result = render_video(tmp_path / "walk.mp4", SMALL, seconds=1.0, fps=4.0)
    assert result.frames == 4 and result.poses_path == poses_path(tmp_path / "walk.mp4") == tmp_path / "walk.poses.txt"
    truth = read_video_poses(result.poses_path)
    assert sorted(truth) == [0, 1, 2, 3] and truth[2][0] == pytest.approx(0.5)
    np.testing.assert_allclose(truth[1][1], walk_poses(SMALL, 4)[1], atol=1e-8)
    container, stream = open_video(result.path)
    try:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    finally:
        container.close()
    assert len(decoded) == 4 and decoded[0].shape == (72, 96, 3)
    # The first frame is the room seen from the first pose (H.264 and sensor noise aside).
    rgb, _ = SynthWorld(SMALL).render_color(SMALL.color_camera, truth[0][1])
    assert np.abs(decoded[0].astype(float) - rgb * 255).mean() < 12.0
