import cv2
import numpy as np
import pytest

from slocal.capture.video import keep_sharp, open_video, sample_video, sharpness, write_video
from slocal.errors import SlocalError
from slocal.io import read_image


def _texture(seed: int, size=(160, 120)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_NEAREST)


def test_sharpness_falls_with_blur():
    img = cv2.cvtColor(_texture(0), cv2.COLOR_RGB2GRAY)
    scores = [sharpness(cv2.GaussianBlur(img, (0, 0), s)) if s else sharpness(img) for s in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.05 * scores[0]


def test_keep_sharp_skips_a_blurred_slot_against_its_neighbours():
    best = np.array([100.0, 110.0, 20.0, 105.0, 95.0, 98.0])
    assert keep_sharp(best, 0.5, 2).tolist() == [True, True, False, True, True, True]
    # The comparison is local: a scene that is less textured later is not "blurred".
    drifting = np.array([100.0, 90.0, 80.0, 30.0, 25.0, 22.0])
    assert keep_sharp(drifting, 0.5, 1).all()
    assert keep_sharp(best, 0.0, 2).all()


def test_sample_video_keeps_the_sharpest_frame_per_slot_and_skips_blurred_slots(tmp_path):
    # 6 slots of 5 frames (10 fps, sampled at 2 fps); in each slot one frame is sharp and the
    # others blurred, except slot 3 where every frame is blurred.
    sharp_index = {0: 2, 1: 6, 2: 13, 3: None, 4: 21, 5: 29}
    frames = []
    for i in range(30):
        img = _texture(i // 5)
        slot = i // 5
        if sharp_index[slot] != i:
            img = cv2.GaussianBlur(img, (0, 0), 2.5 if sharp_index[slot] is not None else 4.0)
        frames.append(img)
    video = tmp_path / "walk.mp4"
    assert write_video(frames, video, fps=10) == 30
    sample = sample_video(video, tmp_path / "images", "walk", fps=2.0, max_side=120, blur_ratio=0.5, blur_window=3)
    assert sample.decoded == 30
    assert [f.name for f in sample.kept] == [f"walk/frame-{sharp_index[s]:06d}.jpg" for s in (0, 1, 2, 4, 5)]
    assert len(sample.blurred) == 1 and 1.5 <= sample.blurred[0].time_s < 2.0
    written = sorted(p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*.jpg"))
    assert written == [f.name for f in sample.kept]
    # Downscaled to max_side on the longer side.
    assert sample.size == (120, 90) and read_image(tmp_path / "images" / sample.kept[0].name).shape == (90, 120, 3)
    assert sample.summary()["blurred_slots_skipped"] == 1


def test_write_video_round_trip(tmp_path):
    frames = [_texture(i) for i in range(4)]
    path = tmp_path / "v.mp4"
    write_video(frames, path, fps=5)
    container, stream = open_video(path)
    try:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    finally:
        container.close()
    assert len(decoded) == 4 and decoded[0].shape == (120, 160, 3)
    # H.264 at crf 18: close to the input, not equal.
    assert np.abs(decoded[2].astype(float) - frames[2]).mean() < 12.0
    with pytest.raises(SlocalError, match="even size"):
        write_video([np.zeros((11, 16, 3), np.uint8)], tmp_path / "odd.mp4", fps=5)
    assert not (tmp_path / "odd.mp4").exists()


@pytest.mark.parametrize(
    ("content", "words"), [(b"", "empty"), (b"\x00\x01garbage" * 100, "cannot decode video"), (None, "not found")]
)
def test_unreadable_videos_are_named(tmp_path, content, words):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SlocalError, match=words) as err:
        open_video(path)
    assert err.value.path == path
