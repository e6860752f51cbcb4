"""Export a distilled student to ONNX or TorchScript, verified against torch.

The exported graph is the student's network at its fixed input size: input
``image`` float32 (1, 3, H, W) as the student's preprocessing prepares it
(``image_size`` = (W, H)); outputs ``coords`` float32 (1, 3, h, w), world
coordinates in metres on the stride grid, and ``conf`` (1, 1, h, w) when the
student predicts a confidence. What a runtime needs besides the graph (scene
id, stride, image size, reference camera, scene centre, preprocessing) is
stored as JSON strings under ``slocal.*`` keys: ONNX ``metadata_props``, or
the ``slocal.json`` extra file of a TorchScript archive.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from slocal.errors import SlocalError
from slocal.io import atomic_path
from slocal.localize.localizer import student_pnp

# onnx and onnxruntime are imported inside the ONNX functions: only ``--format onnx`` needs them,
# and onnxruntime takes seconds to load.
log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
MAX_ABS_DIFF = 1e-4
METADATA_VERSION = 1
TORCHSCRIPT_EXTRA = "slocal.json"


class ExportNet(torch.nn.Module):
    """The student's network with outputs fixed to ``(coords_B3hw, conf_B1hw)`` or ``(coords_B3hw,)``."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net(image)


def export_net(student) -> torch.nn.Module:
    """The traceable network of ``student``: image (1, 3, H, W) -> (coords, [conf])."""
    return ExportNet(student.export_module()).eval()


def example_input(student, seed: int = 0) -> torch.Tensor:
    """A deterministic network input of the student's size, (1, 3, H, W) float32."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (student.image_size[1], student.image_size[0], 3), dtype=np.uint8)
    x = student.preprocess_network_input(rgb)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


def student_metadata(student) -> dict[str, str]:
    """``slocal.*`` metadata (JSON-encoded values) that ``OnnxStudent`` reads back."""
    meta = {
        "version": METADATA_VERSION,
        "scene_id": student.scene_id,
        "scene_fingerprint": getattr(student, "scene_fingerprint", None),
        "stride": int(student.stride),
        "image_size": [int(v) for v in student.image_size],
        "reference_camera": student.reference_camera.to_dict(),
        "centre": [float(v) for v in np.asarray(student.centre, np.float64).reshape(3)],
        "preprocess": student.preprocess_spec(),
        "student": getattr(student, "name", None),
        "teacher": getattr(student, "teacher", None),
        "num_params": int(student.num_params),
        "ransac_threshold_px": student_pnp(student).threshold_px,
    }
    return {f"slocal.{k}": json.dumps(v) for k, v in meta.items()}


def _outputs(result) -> list[np.ndarray]:
    if isinstance(result, torch.Tensor):
        result = (result,)
    return [r.detach().cpu().numpy() for r in result]


def _compare(reference: list[np.ndarray], exported: list[np.ndarray], what: str, path: Path) -> float:
    if len(reference) != len(exported):
        raise SlocalError(f"{what} gives {len(exported)} outputs, torch gives {len(reference)}", path)
    worst = 0.0
    for a, b in zip(reference, exported):
        if a.shape != b.shape:
            raise SlocalError(f"{what} output shape {b.shape} differs from torch's {a.shape}", path)
        worst = max(worst, float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))
    if not np.isfinite(worst) or worst > MAX_ABS_DIFF:
        raise SlocalError(f"{what} output differs from torch by {worst:.3g} (> {MAX_ABS_DIFF:g}); export refused", path)
    return worst


def _export_onnx(net: torch.nn.Module, x: torch.Tensor, n_out: int, metadata: dict[str, str], tmp: Path) -> None:
    import onnx

    names = ["coords", "conf"][:n_out]
    with warnings.catch_warnings():
        # The legacy (TorchScript-based) exporter is used because the dynamo one
        # needs onnxscript; tracing constants are intended at a fixed input size.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            (x,),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=names,
            do_constant_folding=True,
            external_data=False,
        )
    model = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))


def _run_onnx(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.numpy()})


def export_student(student, path: str | Path, format: str = "onnx") -> dict:
    """Export ``student`` and check the exported model against torch.

    Args:
        student: a loaded ``Student`` (``slocal.distill.model_file.load_student``).
        path: output file; written atomically, only after verification passed.
        format: ``onnx`` (opset >= 17, static input size, CPU onnxruntime check)
            or ``torchscript`` (traced, reloaded for the check).

    Returns:
        ``path``, ``format``, ``file_mb``, ``max_abs_diff`` (exported vs torch, on a
        deterministic random image) and ``metadata``.

    Raises:
        SlocalError: unknown format, or outputs differing by more than ``MAX_ABS_DIFF``.
    """
    if format not in EXPORT_FORMATS:
        raise SlocalError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    net = export_net(student).cpu()
    x = example_input(student)
    with torch.no_grad():
        reference = _outputs(net(x))
    metadata = student_metadata(student)
    with atomic_path(path) as tmp:
        if format == "onnx":
            _export_onnx(net, x, len(reference), metadata, tmp)
            diff = _compare(reference, _run_onnx(tmp, x), "onnxruntime", path)
        else:
            with torch.no_grad(), warnings.catch_warnings():
                # TorchScript is deprecated upstream but is the format asked for; the
                # trace is at a fixed input size, so its constants are intended.
                warnings.filterwarnings("ignore", category=FutureWarning)
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                traced = torch.jit.trace(net, (x,), check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata)})
                diff = _compare(reference, _outputs(torch.jit.load(str(tmp))(x)), "TorchScript", path)
    info = {
        "path": str(path),
        "format": format,
        "file_mb": path.stat().st_size / 2**20,
        "max_abs_diff": diff,
        "metadata": {k: json.loads(v) for k, v in metadata.items()},
    }
    log.info("exported %s to %s (%.2f MB, max |diff| %.2e)", format, path, info["file_mb"], diff)
    return info
