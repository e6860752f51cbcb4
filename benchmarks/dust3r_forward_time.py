"""Time the DUSt3R network forward pass per image pair (timing only, random weights).

Configurations: ViT-L encoder / ViT-B decoder with the DPT head at 512x384
(``DUSt3R_ViTLarge_BaseDecoder_512_dpt``) and with the linear head at 224x224
(``..._224_linear``). One pair per forward (batch of one pair), natural
orientation as used by ``load_dust3r``. On CUDA each configuration is timed in
fp32 and under bf16/fp16 autocast (heads stay fp32).

Usage::

    python benchmarks/dust3r_forward_time.py --device cpu --repeats 2
    python benchmarks/dust3r_forward_time.py --device cuda --repeats 10 --warmup 2

Writes ``benchmarks/results/dust3r_forward_time_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from slocal.bench.machine import machine_info
from slocal.bench.report import code_text
from slocal.io import write_json, write_text
from slocal.teach.dust3r import Dust3rConfig, Dust3rNet

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    "vitlarge_512_dpt": (Dust3rConfig.vitlarge_512_dpt, (384, 512)),
    "vitlarge_224_linear": (Dust3rConfig.vitlarge_224_linear, (224, 224)),
}
LABEL = "timing only, random weights"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_forward(net: Dust3rNet, hw: tuple[int, int], device: torch.device, amp: str, repeats: int, warmup: int):
    gen = torch.Generator().manual_seed(0)
    h, w = hw
    view1 = {"img": (torch.rand(1, 3, h, w, generator=gen) * 2 - 1).to(device)}
    view2 = {"img": (torch.rand(1, 3, h, w, generator=gen) * 2 - 1).to(device)}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            if dtype is None:
                pred1, pred2 = net(view1, view2)
            else:
                with torch.autocast(device.type, dtype=dtype):
                    pred1, pred2 = net(view1, view2)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        assert pred1["pts3d"].shape == (1, h, w, 3) and torch.isfinite(pred2["conf"]).all()
        return elapsed

    for _ in range(warmup):
        once()
    return [once() for _ in range(repeats)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per configuration")
    parser.add_argument("--warmup", type=int, default=0, help="untimed forwards first (0 on CPU is fine)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--amp", nargs="+", default=None, help="CUDA only: fp32 bf16 fp16 (default all three)")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available")
    amps = ["fp32"] if device.type == "cpu" else (args.amp or ["fp32", "bf16", "fp16"])
    started = dt.datetime.now(dt.timezone.utc)
    results = []
    for name in args.configs:
        make_config, hw = CONFIGS[name]
        torch.manual_seed(0)
        t0 = time.perf_counter()
        net = Dust3rNet(make_config().natural()).eval()  # official-style random init
        build_s = time.perf_counter() - t0
        net.to(device)
        n_params = sum(p.numel() for p in net.parameters())
        for amp in amps:
            load_before = os.getloadavg()
            times = time_forward(net, hw, device, amp, args.repeats, args.warmup)
            entry = {
                "config": name,
                "input_hw": list(hw),
                "pair_batch": 1,
                "precision": amp if amp == "fp32" else f"{amp} autocast (heads fp32)",
                "parameters": n_params,
                "build_seconds": round(build_s, 2),
                "seconds_per_pair_median": statistics.median(times),
                "seconds_per_pair_all": times,
                "loadavg_before": list(load_before),
                "loadavg_after": list(os.getloadavg()),
            }
            results.append(entry)
            print(f"{name} {amp}: median {entry['seconds_per_pair_median']:.3f} s/pair ({times})", flush=True)
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()

    machine = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "code": machine_info().get("code"),
    }
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    report = {
        "label": LABEL,
        "what": "DUSt3R network forward (encoder + decoder + both heads) per image pair, batch of one pair",
        "date_utc": started.isoformat(timespec="seconds"),
        "command": command,
        "device": str(device),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": machine,
        "results": results,
    }
    stem = f"dust3r_forward_time_{device.type}"
    write_json(RESULTS / f"{stem}.json", report)

    lines = [
        f"# DUSt3R forward time per pair ({device.type}) — {LABEL}",
        "",
        "Weights are random (official-style init); only the timing is meaningful.",
        "",
        f"- date (UTC): {report['date_utc']}",
        f"- code: {code_text(machine['code'])}",
        f"- command: `{command}`",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, torch {machine['torch_version']}, "
        f"{machine['torch_threads']} threads" + (f", GPU {machine['gpu']}" if machine["gpu"] else ""),
        f"- repeats: {args.repeats} (warm-up: {args.warmup})",
        "",
        "| config | input HxW | precision | params | s/pair median | all repeats (s) | loadavg 1/5/15 min before |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['input_hw'][0]}x{r['input_hw'][1]} | {r['precision']} | "
            f"{r['parameters'] / 1e6:.1f}M | {r['seconds_per_pair_median']:.3f} | "
            f"{', '.join(f'{t:.3f}' for t in r['seconds_per_pair_all'])} | "
            f"{', '.join(f'{v:.2f}' for v in r['loadavg_before'])} |"
        )
    write_text(RESULTS / f"{stem}.md", "\n".join(lines) + "\n")
    print(f"wrote {RESULTS / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
