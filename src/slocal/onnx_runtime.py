"""onnxruntime sessions on CPU, configured once for the encoder and the exported students."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnxruntime as ort


def cpu_session(
    model: bytes | str | Path,
    threads: int | None = None,
    spinning: bool = True,
    fixed_dims: Mapping[str, int] | None = None,
) -> ort.InferenceSession:
    """An onnxruntime CPU session for an ONNX model (file path or serialized bytes).

    Args:
        model: an ``.onnx`` path or the model's bytes.
        threads: intra-op threads (None: onnxruntime's default, one per core).
        spinning: let worker threads busy-wait between runs (onnxruntime's default).
            Off for the mapping encoder: on 2 cores the spinning threads starve the
            numpy work that follows each run (feature fusion, novel-view rendering;
            40 -> 27 ms per encoded pass here). On for query-time students, where
            it is 2-7 ms faster per query on 20 redkitchen-split queries and RANSAC
            is not slowed.
        fixed_dims: values for the model's named free input dimensions (``{"height": 240}``): the
            session then accepts only those, and onnxruntime's graph optimisation can fold the
            shape arithmetic that depends on them (see ``OrtModule``).
    """
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    for name, value in (fixed_dims or {}).items():
        options.add_free_dimension_override_by_name(name, int(value))
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
