import socket

import torch
import torch.multiprocessing as mp
import yaml

from helpers.distill_fixtures import TINY_STUDENT, ddp_worker, tiny_train
from slocal.distill.config import to_plain
from slocal.distill.model_file import load_student


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_and_rank0_writes_one_model(tiny_data, tmp_path):
    out = tmp_path / "students" / "model.pt"
    out.parent.mkdir()
    train = {k: v for k, v in to_plain(tiny_train()).items() if k not in ("minutes", "iterations")}
    (tmp_path / "students" / "model.pt.yaml").write_text(
        yaml.safe_dump({"student": to_plain(TINY_STUDENT), "train": train})
    )
    runs = tmp_path / "runs"  # empty: rank 0 computes the targets while rank 1 waits
    mp.spawn(ddp_worker, args=(2, _free_port(), str(tiny_data), str(runs), str(out)), nprocs=2, join=True)

    assert sorted(p.name for p in out.parent.iterdir()) == [
        "model.pt",
        "model.pt.ckpt",
        "model.pt.lock",
        "model.pt.yaml",
    ]
    student = load_student(out, expect_scene="tiny")
    assert student.train_info["world_size"] == 2 and student.train_info["iterations"] == 6
    ck = torch.load(out.with_name("model.pt.ckpt"), weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    # Each rank drew its own data order and augmentation.
    assert ck["rng"][0]["numpy_sampler"] != ck["rng"][1]["numpy_sampler"]
    assert len(list(runs.rglob("index.json"))) == 1
