"""Folders of scenes (a home of rooms): listing the rooms, and a clear error where one scene is expected."""

import pytest

from conftest import write_tiny_twelve_scenes
from slocal.data import find_rooms, find_scenes, load_scene
from slocal.errors import SlocalError


def test_a_folder_of_scenes_lists_its_rooms(tmp_path):
    data = tmp_path / "data"
    for room in ("living", "kitchen", "floor2/bath"):
        write_tiny_twelve_scenes(data / "apt1" / room)
    write_tiny_twelve_scenes(data / "office")
    (data / "apt1" / "notes").mkdir()  # a folder that is no scene is not a room
    assert find_rooms(data, "apt1") == ["apt1/floor2/bath", "apt1/kitchen", "apt1/living"]
    assert find_rooms(data, "apt1/") == ["apt1/floor2/bath", "apt1/kitchen", "apt1/living"]
    # A scene is not a folder of rooms; an empty folder holds none.
    assert find_rooms(data, "office") == [] and find_rooms(data, "apt1/notes") == []
    # The flat listing still names every room on its own.
    assert [s for s, _ in find_scenes(data)] == ["apt1/floor2/bath", "apt1/kitchen", "apt1/living", "office"]
    with pytest.raises(SlocalError, match="'apt9' not found"):
        find_rooms(data, "apt9")


def test_loading_a_folder_of_rooms_as_one_scene_names_the_rooms(tmp_path):
    data = tmp_path / "data"
    for room in ("kitchen", "living"):
        write_tiny_twelve_scenes(data / "apt1" / room)
    assert load_scene(data, "apt1/kitchen").id == "apt1/kitchen"
    with pytest.raises(SlocalError, match=r"folder of 2 scenes \(apt1/kitchen, apt1/living\)") as info:
        load_scene(data, "apt1")
    assert "name a room" in str(info.value)
    (data / "empty").mkdir()
    with pytest.raises(SlocalError, match="not a scene folder"):
        load_scene(data, "empty")
