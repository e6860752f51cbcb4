"""Loading DUSt3R checkpoints into :class:`Dust3rNet` safely (no pickle code, no eval).

Supported inputs:

* an official ``.pth``: a ``torch.save``'d dict with ``"model"`` (the state dict) and
  ``"args"`` (``argparse.Namespace`` whose ``model`` is ``"AsymmetricCroCo3DStereo(...)"``);
  the constructor string is parsed with :mod:`ast` and only literals are accepted;
* a plain state dict (``.pth``/``.pt``/``.bin`` or ``.safetensors``) with a
  ``config.json`` of constructor keyword arguments beside it (Hugging Face
  style), or with ``config=`` given explicitly;
* a folder holding ``config.json`` and ``model.safetensors`` / ``pytorch_model.bin``.

Like the official ``load_model``, the network is built with
``PatchEmbedDust3R`` and ``landscape_only=False`` by default (natural image
orientation, batches of one shape).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from slocal.errors import SlocalError
from slocal.io import read_json
from slocal.teach.dust3r.model import Dust3rConfig, Dust3rNet

# safetensors is imported only for ``.safetensors`` checkpoints (the official ones are ``.pth``).
log = logging.getLogger(__name__)

OFFICIAL_CLASS = "AsymmetricCroCo3DStereo"
CHECKPOINT_HELP = (
    "official DUSt3R checkpoints (e.g. DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth, "
    "DUSt3R_ViTLarge_BaseDecoder_512_linear.pth, DUSt3R_ViTLarge_BaseDecoder_224_linear.pth) "
    "are linked from the 'Checkpoints' section of the naver/dust3r README: https://github.com/naver/dust3r"
)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_LIST_FIRST = 5


# ---------------------------------------------------------------------- constructor strings


def _literal(node: ast.expr) -> Any:
    """Value of a literal expression node: numbers, strings, booleans, None, tuples/lists, ``inf``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"unsupported expression {ast.unparse(node)!r}")
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"unsupported expression {ast.unparse(node)!r} (only literals and inf are accepted)")


def parse_constructor_string(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"ClassName(kw=literal, ...)"`` without evaluating it.

    Returns:
        The class name and its keyword arguments (tuples for sequences, ``math.inf`` for ``inf``).

    Raises:
        ValueError: anything but a call of a plain name with literal keyword arguments.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"constructor string is not valid Python syntax: {exc.msg}") from exc
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"expected 'ClassName(...)', got {text[:80]!r}")
    if call.args:
        raise ValueError("positional constructor arguments are not supported")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError("'**' arguments are not supported")
        kwargs[kw.arg] = _literal(kw.value)
    return call.func.id, kwargs


def config_from_constructor_string(text: str) -> Dust3rConfig:
    """:class:`Dust3rConfig` of an official ``args.model`` string (as trained, no orientation change)."""
    name, kwargs = parse_constructor_string(text)
    if "MASt3R" in name:
        raise ValueError(f"{name} is a MASt3R model; MASt3R checkpoints are not supported, use a DUSt3R checkpoint")
    if name != OFFICIAL_CLASS:
        raise ValueError(f"unknown model class {name!r} (expected {OFFICIAL_CLASS})")
    return Dust3rConfig.from_kwargs(kwargs)


# ---------------------------------------------------------------------- file reading


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # keep torch's specific reason but not its advice to disable weights_only
        text = str(exc)
        after = text.partition("WeightsUnpickler error:")[2].split("Check the documentation")[0]
        detail = " ".join(after.split()).split(" Please use")[0] or text.splitlines()[0]
        raise SlocalError(
            "cannot be read as a weights-only PyTorch checkpoint (slocal never unpickles arbitrary objects; "
            f"only tensors, containers and argparse.Namespace are allowed): {detail}",
            path,
        ) from exc
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as exc:
        # torch reports foreign or truncated files with assorted exception types
        detail = f"{type(exc).__name__}: {exc}".split("\n")[0]
        raise SlocalError(f"not a readable PyTorch checkpoint ({detail})", path) from exc


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise SlocalError(f"cannot read safetensors file: {exc}", path) from exc


def _config_file_kwargs(path: Path) -> dict[str, Any]:
    kwargs = read_json(path)
    if not isinstance(kwargs, dict):
        raise SlocalError("expected a JSON object of constructor keyword arguments", path)
    return kwargs


def _config_from_kwargs(kwargs: Mapping[str, Any], path: Path) -> Dust3rConfig:
    try:
        return Dust3rConfig.from_kwargs(kwargs)
    except (ValueError, TypeError) as exc:
        raise SlocalError(f"unusable DUSt3R configuration: {exc}", path) from exc


def read_checkpoint(
    path: str | Path, config: Dust3rConfig | Mapping[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], Dust3rConfig]:
    """Read a checkpoint's state dict and architecture (as trained).

    Args:
        path: official ``.pth``, plain state dict file, or a folder (see module docstring).
        config: architecture for files that do not carry one (a config or constructor kwargs);
            overrides a ``config.json``. Ignored for official checkpoints, whose ``args`` win.

    Raises:
        SlocalError: missing file, unreadable file, or no usable architecture description.
    """
    path = Path(path)
    if not path.exists():
        raise SlocalError(f"DUSt3R checkpoint not found; {CHECKPOINT_HELP}", path)
    config_json = None
    if path.is_dir():
        config_json = path / "config.json"
        weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not weights:
            raise SlocalError(f"folder holds none of {', '.join(WEIGHT_FILES)}; {CHECKPOINT_HELP}", path)
        path = weights[0]
    elif (path.parent / "config.json").is_file():
        config_json = path.parent / "config.json"

    if path.suffix == ".safetensors":
        obj: Any = _safetensors_load(path)
    else:
        obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise SlocalError(f"expected a dict in the checkpoint, found {type(obj).__name__}", path)

    if "model" in obj and isinstance(obj["model"], dict):
        state_dict = obj["model"]
        args = obj.get("args")
        model_string = getattr(args, "model", None)
        if isinstance(model_string, str):
            try:
                cfg = config_from_constructor_string(model_string)
            except (ValueError, TypeError) as exc:
                raise SlocalError(f"refusing the model constructor in args.model: {exc}", path) from exc
            return _tensor_dict(state_dict, path), cfg
    else:
        state_dict = obj

    if isinstance(config, Dust3rConfig):
        cfg = config
    elif config is not None:
        cfg = _config_from_kwargs(config, path)
    elif config_json is not None and config_json.is_file():
        cfg = _config_from_kwargs(_config_file_kwargs(config_json), config_json)
    else:
        raise SlocalError(
            "checkpoint carries no model description (no args.model) and there is no config.json beside it; "
            f"pass config= or use an official checkpoint: {CHECKPOINT_HELP}",
            path,
        )
    return _tensor_dict(state_dict, path), cfg


def _tensor_dict(state_dict: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SlocalError(f"state dict entries that are not tensors: {', '.join(map(str, bad[:_LIST_FIRST]))}", path)
    return dict(state_dict)


# ---------------------------------------------------------------------- key checking


def _listing(what: str, items: list[str]) -> str:
    more = f", ... ({len(items) - _LIST_FIRST} more)" if len(items) > _LIST_FIRST else ""
    return f"{len(items)} {what}: {', '.join(items[:_LIST_FIRST])}{more}"


def check_state_dict(net: Dust3rNet, state_dict: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse a state dict that does not have exactly the network's keys and shapes.

    Either key of a DPT alias pair is enough. The message names the file and
    lists the first few missing, unexpected and shape-mismatched keys with counts.

    Raises:
        SlocalError: on any difference.
    """
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    aliases = net.state_dict_aliases()
    partner = {**aliases, **{v: k for k, v in aliases.items()}}
    missing = [k for k in expected if k not in state_dict and partner.get(k) not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (file {tuple(v.shape)} vs network {expected[k]})"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    if any("head_local_features" in k for k in unexpected):
        hint = "; this looks like a MASt3R checkpoint, which is not supported (use a DUSt3R checkpoint)"
    else:
        hint = ""
    parts = [
        _listing(what, items)
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    cfg = net.config
    arch = f"{cfg.head_type} head, enc {cfg.enc_embed_dim}x{cfg.enc_depth}, dec {cfg.dec_embed_dim}x{cfg.dec_depth}"
    raise SlocalError(f"not a checkpoint of the expected DUSt3R architecture ({arch}): {'; '.join(parts)}{hint}", path)


# ---------------------------------------------------------------------- public entry point


def load_dust3r(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    config: Dust3rConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    natural_orientation: bool = True,
) -> Dust3rNet:
    """Load a DUSt3R checkpoint as an eval-mode, frozen :class:`Dust3rNet`.

    Args:
        path: official ``.pth`` (or a plain state dict + config, see module docstring).
        device: where the network goes.
        config: architecture for files without one (ignored for official checkpoints).
        overrides: :class:`Dust3rConfig` fields to replace after reading, e.g.
            non-official DPT sizes (``dpt_feature_dim`` ...).
        natural_orientation: like the official ``load_model``: PatchEmbedDust3R and
            ``landscape_only=False``, so images are fed as they are (one shape per batch).

    Raises:
        SlocalError: missing/unreadable file, unsupported architecture (MASt3R
            included) or a state dict that does not match it exactly.
    """
    path = Path(path)
    state_dict, cfg = read_checkpoint(path, config)
    try:
        if overrides:
            cfg = replace(cfg, **dict(overrides))
        if natural_orientation:
            cfg = cfg.natural()
        with torch.device("meta"):
            net = Dust3rNet(cfg, init_weights=False)
    except (ValueError, TypeError) as exc:
        raise SlocalError(f"unsupported DUSt3R configuration: {exc}", path) from exc
    check_state_dict(net, state_dict, path)
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    net.load_state_dict(state_dict, strict=True, assign=True)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("loaded DUSt3R (%s head, %.1fM parameters) from %s", cfg.head_type, n_params / 1e6, path)
    return net.to(device).eval().requires_grad_(False)


#: bytes of the checkpoint hashed for its identity (with the file size).
IDENTITY_BYTES = 8 * 2**20


def checkpoint_help() -> str:
    """How to get an official checkpoint (for error messages)."""
    return CHECKPOINT_HELP


def checkpoint_identity(path: str | Path) -> dict:
    """Size and a hash of the first bytes of a checkpoint (and of its ``config.json``).

    The identity, not the path, enters the teacher settings: a moved or renamed
    file keeps its cached targets, other weights get new ones.

    Raises:
        SlocalError: the checkpoint does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise SlocalError(f"DUSt3R checkpoint not found; {checkpoint_help()}", path)
    if path.is_dir():
        weights = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
        if not weights:
            raise SlocalError(f"folder holds none of {', '.join(WEIGHT_FILES)}; {checkpoint_help()}", path)
        files = [weights[0], path / "config.json"]
    else:
        files = [path, path.parent / "config.json"]
    h = hashlib.sha256()
    total = 0
    for role, f in zip(("weights", "config"), files):
        if not f.is_file():
            continue
        size = f.stat().st_size
        total += size
        h.update(f"{role}|{size}|".encode())
        with f.open("rb") as fh:
            h.update(fh.read(IDENTITY_BYTES))
    return {"bytes": total, "sha256_head": h.hexdigest()[:20]}
