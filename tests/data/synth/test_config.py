import pytest

from slocal.data.synth import SynthConfig
from slocal.errors import SlocalError


def test_config_rejects_bad_values():
    with pytest.raises(SlocalError, match="SynthConfig: query_frames must be >= 1, got 0"):
        SynthConfig(query_frames=0)
    with pytest.raises(SlocalError, match=r"SynthConfig: color_size\[1\] must be >= 8, got 4"):
        SynthConfig(color_size=(64, 4))
    with pytest.raises(SlocalError, match="too small"):
        SynthConfig(room_size=(2.0, 5.0, 2.6))
