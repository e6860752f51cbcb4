import pytest

from slocal.data.synth import SynthConfig
from slocal.errors import SlocalError


def test_config_rejects_bad_values():
    with pytest.raises(SlocalError, match="at least one"):
        SynthConfig(query_frames=0)
    with pytest.raises(SlocalError, match="too small"):
        SynthConfig(room_size=(2.0, 5.0, 2.6))
