import pytest

from slocal.capture.config import MapConfig, ScaleRequest
from slocal.errors import SlocalError


def test_map_settings_are_coerced_and_every_bad_one_is_named_in_one_line():
    assert MapConfig(fps="3", max_side=640).fps == 3.0
    with pytest.raises(SlocalError, match=r"fps=-1.0 \(must be > 0\); pairs='x'"):
        MapConfig(fps=-1, pairs="x")
    with pytest.raises(SlocalError, match="MapConfig: unknown key 'fpss'"):
        MapConfig(fpss=1)
    with pytest.raises(SlocalError, match="key 'max_side': expected int"):
        MapConfig(max_side="big")


def test_the_scale_is_given_once_and_positive():
    assert ScaleRequest(distance=["a", "b", "2"]).distance == ("a", "b", 2.0)
    with pytest.raises(SlocalError, match="not both"):
        ScaleRequest(metres_per_unit=1.0, distance=("a", "b", 2.0))
    with pytest.raises(SlocalError, match="positive number of metres"):
        ScaleRequest(distance=("a", "b", 0.0))
