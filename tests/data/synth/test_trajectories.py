import numpy as np

from slocal.data.synth import SynthConfig, trajectory
from slocal.geometry import invert, pose_error


def test_query_poses_are_new_but_within_the_mapped_volume():
    config = SynthConfig()
    mapping, query = trajectory(config, "mapping"), trajectory(config, "query")
    assert len(mapping) == 150 and len(query) == 15
    for q in query:
        errors = np.array([pose_error(invert(m), invert(q)) for m in mapping])
        assert errors[:, 0].min() > 0.02 or errors[:, 1].min() > 1.0  # not a copy of a mapping pose
        close = (errors[:, 0] < 0.3) & (errors[:, 1] < 20.0)
        assert close.any()  # but a mapping frame saw the same place from nearby
