import math

import numpy as np
import pytest
from PIL import Image

from slocal.capture.photos import DEFAULT_FOCAL_FACTOR, copy_photo, focal_from_exif, list_photos, read_photo
from slocal.errors import SlocalError


def test_focal_from_35mm_equivalent_uses_the_diagonal():
    f, source = focal_from_exif(4032, 3024, focal_35mm=26)
    assert source == "exif-35mm"
    assert f == pytest.approx(26 * 5040 / math.hypot(36, 24))  # 3028.7 px: a phone's main camera
    # The same photo turned upright keeps its focal length.
    assert focal_from_exif(3024, 4032, focal_35mm=26)[0] == pytest.approx(f)


def test_focal_from_focal_plane_resolution():
    # 4.25 mm lens, 1000 pixels per mm (FocalPlaneResolutionUnit 4: mm; 3: cm).
    assert focal_from_exif(4000, 3000, focal_mm=4.25, plane_x_res=1000, plane_unit=4) == (4250.0, "exif-focal-plane")
    assert focal_from_exif(4000, 3000, focal_mm=4.25, plane_x_res=10000, plane_unit=3)[0] == pytest.approx(4250.0)
    # The file was downscaled to half after the camera wrote PixelXDimension = 4000.
    f, _ = focal_from_exif(2000, 1500, focal_mm=4.25, plane_x_res=1000, plane_unit=4, pixel_x=4000, stored_width=2000)
    assert f == pytest.approx(2125.0)


@pytest.mark.parametrize("tags", [{}, {"focal_mm": 4.25}, {"focal_35mm": 0}, {"focal_mm": 4.0, "plane_x_res": 10}])
def test_focal_without_usable_exif_is_the_stated_default(tags):
    assert focal_from_exif(640, 480, **tags) == (DEFAULT_FOCAL_FACTOR * 640, "default")


def _jpeg(path, size=(64, 48), focal_35mm=None, orientation=None):
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[:, : size[0] // 4] = 255  # a white band on the left, to see the rotation
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, exif=exif, quality=95)
    return path


def test_read_photo_with_exif_focal_and_orientation(tmp_path):
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be upright.
    path = _jpeg(tmp_path / "src" / "a.jpg", focal_35mm=28, orientation=6)
    photo = read_photo(path, "a.jpg")
    assert (photo.width, photo.height, photo.rotated) == (48, 64, True)
    assert photo.focal_source == "exif-35mm"
    assert photo.focal_px == pytest.approx(28 * 80 / math.hypot(36, 24))
    copy_photo(path, tmp_path / "dst" / "a.jpg", photo)
    with Image.open(tmp_path / "dst" / "a.jpg") as im:
        assert im.size == (48, 64) and im.getexif().get(0x0112, 1) == 1
        upright = np.asarray(im.convert("L"))
    assert upright[:12].mean() > 200 and upright[-12:].mean() < 50  # the band is now at the top
    plain = read_photo(_jpeg(tmp_path / "src" / "b.jpg"), "b.jpg")
    assert (plain.width, plain.height, plain.rotated, plain.focal_source) == (64, 48, False, "default")
    copy_photo(tmp_path / "src" / "b.jpg", tmp_path / "dst" / "b.jpg", plain)
    assert (tmp_path / "dst" / "b.jpg").read_bytes() == (tmp_path / "src" / "b.jpg").read_bytes()


def test_read_photo_refuses_a_truncated_file(tmp_path):
    path = _jpeg(tmp_path / "a.jpg")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SlocalError, match="truncated") as err:
        read_photo(path, "a.jpg")
    assert err.value.path == path


def test_list_photos_recursive_skips_hidden_and_other_files(tmp_path):
    for name in ("b.JPG", "a/c.png", "a/.hidden.jpg", ".cache/d.jpg", "notes.txt", "e.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_photos(tmp_path) == ["a/c.png", "b.JPG", "e.tif"]
