"""slocal's own implementation of the DUSt3R network (Wang et al., CVPR 2024), for inference.

It reproduces the official ``AsymmetricCroCo3DStereo`` numerically (checked
against reference fixtures) and loads the official checkpoints' state dicts
unchanged; it contains no dust3r/croco code.

Typical use (what the DUSt3R teacher does)::

    from slocal.teach.dust3r import Dust3rRunner, load_dust3r, preprocess_image

    net = load_dust3r("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth", device="cuda")
    img_a, cam_a = preprocess_image(rgb_a, camera_a, size=512)   # (3, H, W) in [-1, 1], adjusted Camera
    img_b, cam_b = preprocess_image(rgb_b, camera_b, size=512)
    runner = Dust3rRunner(net, device="cuda", batch_size=4, amp="bf16")
    [pred] = runner.run([(img_a, img_b)])
    pred.pts3d_1, pred.conf_1   # (H, W, 3), (H, W): view a's pixels in view a's camera frame
    pred.pts3d_2, pred.conf_2   # view b's pixels, also in view a's frame (same arbitrary scale)

Conventions:

* Point maps are in the first view's camera frame (OpenCV axes as in training:
  x right, y down, z forward), up to an unknown per-pair scale; confidences are >= 1.
* Pixel ``(col, row)`` of a point map corresponds to image coordinate
  ``(col + 0.5, row + 0.5)`` of the *processed* camera returned by
  :func:`preprocess_image` (the convention of :mod:`slocal.geometry.camera`).
* :func:`load_dust3r` builds the network like the official ``load_model``
  (``PatchEmbedDust3R``, ``landscape_only=False``): feed images in natural
  orientation; :class:`Dust3rRunner` batches pairs of identical shapes.
* Use 512-sized inputs (``size=512``) with the 512 checkpoints and ``size=224``
  with the 224 one.

Modules: :mod:`.rope` (2D RoPE), :mod:`.blocks` (patch embeddings, attention,
encoder/decoder blocks), :mod:`.heads` (linear and DPT heads, post-processing),
:mod:`.model` (:class:`Dust3rConfig`, :class:`Dust3rNet`), :mod:`.checkpoint`,
:mod:`.preprocess`, :mod:`.inference`.
"""

from slocal.teach.dust3r.checkpoint import load_dust3r, parse_constructor_string
from slocal.teach.dust3r.inference import Dust3rRunner, PairPrediction
from slocal.teach.dust3r.model import Dust3rConfig, Dust3rNet
from slocal.teach.dust3r.preprocess import preprocess_image

__all__ = [
    "Dust3rConfig",
    "Dust3rNet",
    "Dust3rRunner",
    "PairPrediction",
    "load_dust3r",
    "parse_constructor_string",
    "preprocess_image",
]
