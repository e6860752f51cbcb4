"""Photo folders: which files are photos, their focal length from EXIF, upright copies, camera groups.

Focal length (the starting value COLMAP refines):

- ``FocalLengthIn35mmFilm`` (what phones write): the 35 mm equivalent is
  defined on the diagonal (crop factor), so ``f_px = f35 * diag_px / 43.27``;
- else ``FocalLength`` (mm) with ``FocalPlaneXResolution`` and its unit (pixels
  per inch / cm / mm on the sensor, at the recorded ``PixelXDimension``);
- else ``DEFAULT_FOCAL_FACTOR`` x the longer side (COLMAP's own default prior,
  a 45 degree field of view), which COLMAP then treats as unknown.

Photos that carry an EXIF orientation other than "upright" are written as
upright copies, since COLMAP reads the stored pixels and OpenCV (slocal's
reader) applies the orientation: both must see the same image.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from slocal.errors import SlocalError
from slocal.io import atomic_path, check_image

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_FOCAL_FACTOR = 1.2
_DIAGONAL_35MM = math.hypot(36.0, 24.0)
# FocalPlaneResolutionUnit: 2 inch, 3 cm; 4 mm and 5 micrometre appear in some cameras' files.
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
_EXIF_IFD = 0x8769
_TAGS = {
    "focal_mm": 0x920A,
    "focal_35mm": 0xA405,
    "plane_x_res": 0xA20E,
    "plane_unit": 0xA210,
    "pixel_x": 0xA002,
    "make": 0x010F,
    "model": 0x0110,
    "lens": 0xA434,
    "orientation": 0x0112,
}


def list_photos(folder: Path) -> list[str]:
    """Photo files under ``folder`` (recursive, hidden entries skipped), as sorted POSIX paths relative to it."""
    names = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
            names.append(rel.as_posix())
    return sorted(names)


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def focal_from_exif(
    width: int,
    height: int,
    focal_35mm: float | None = None,
    focal_mm: float | None = None,
    plane_x_res: float | None = None,
    plane_unit: int | None = None,
    pixel_x: int | None = None,
    stored_width: int | None = None,
) -> tuple[float, str]:
    """Focal length in pixels of a ``width`` x ``height`` image, and where it came from.

    Args:
        width, height: the image as used (upright).
        focal_35mm: ``FocalLengthIn35mmFilm`` (mm).
        focal_mm: ``FocalLength`` (mm).
        plane_x_res, plane_unit: ``FocalPlaneXResolution`` and ``FocalPlaneResolutionUnit``.
        pixel_x: ``PixelXDimension``, the width the focal-plane resolution refers to.
        stored_width: width of the stored (not rotated) pixels.

    Returns:
        ``(f_px, source)`` with source ``exif-35mm``, ``exif-focal-plane`` or ``default``.
    """
    if (f35 := _number(focal_35mm)) is not None:
        return f35 * math.hypot(width, height) / _DIAGONAL_35MM, "exif-35mm"
    f_mm, res = _number(focal_mm), _number(plane_x_res)
    unit = _UNIT_MM.get(int(plane_unit)) if plane_unit is not None else None
    if f_mm is not None and res is not None and unit is not None:
        f_px = f_mm * res / unit
        if _number(pixel_x) is not None and stored_width:
            f_px *= stored_width / float(pixel_x)  # the file was resized after the camera wrote the tags
        return f_px, "exif-focal-plane"
    return DEFAULT_FOCAL_FACTOR * max(width, height), "default"


@dataclass(frozen=True)
class Photo:
    """One photo of the source.

    Attributes:
        name: path relative to the source folder (and to the scene's ``images/``).
        width, height: upright size.
        focal_px: starting focal length; focal_source: how it was found (``focal_from_exif``).
        camera_key: photos with the same key share one camera (size, focal, make, model, lens).
        rotated: the EXIF orientation was applied (an upright copy is written).
    """

    name: str
    width: int
    height: int
    focal_px: float
    focal_source: str
    camera_key: str
    rotated: bool = False


def read_photo(path: Path, name: str) -> Photo:
    """Check that a photo decodes and read its size, orientation and focal length.

    Raises:
        SlocalError: missing, empty, truncated or undecodable file.
    """
    check_image(path)
    try:
        with Image.open(path) as im:
            stored_w, stored_h = im.size
            exif = im.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
    except (UnidentifiedImageError, OSError) as exc:
        raise SlocalError(f"cannot read photo: {exc}", path) from None

    def tag(key: str):
        t = _TAGS[key]
        return sub.get(t, exif.get(t))

    orientation = tag("orientation") or 1
    swapped = orientation in (5, 6, 7, 8)  # a quarter turn (with or without a mirror)
    width, height = (stored_h, stored_w) if swapped else (stored_w, stored_h)
    focal, source = focal_from_exif(
        width,
        height,
        tag("focal_35mm"),
        tag("focal_mm"),
        tag("plane_x_res"),
        tag("plane_unit"),
        tag("pixel_x"),
        stored_w,
    )
    make = " ".join(str(tag(k) or "").strip("\x00 ") for k in ("make", "model", "lens")).strip()
    key = f"{width}x{height} f{focal:.1f} {make}".strip()
    return Photo(name, width, height, focal, source, key, rotated=orientation not in (1, None))


def copy_photo(src: Path, dst: Path, photo: Photo) -> None:
    """Copy a photo into the scene; a photo with an EXIF orientation is written upright (same format)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not photo.rotated:
        shutil.copyfile(src, dst)
        return
    with Image.open(src) as im:
        upright = ImageOps.exif_transpose(im)
        with atomic_path(dst) as tmp:
            # exif_transpose drops the orientation tag; quality 95 keeps re-encoding loss small.
            upright.save(tmp, format=im.format, **({"quality": 95} if im.format == "JPEG" else {}))
