"""Faults users meet, each through the real CLI in a subprocess: kill -9, two processes at once, failing bench rows.

Takes about a minute and a half on 2 cores (most of it interpreter start-up and the synth room).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import torch

from helpers.cli_run import TINY_ITERATIONS, leftovers, lines, run_many, run_slocal, start_slocal, wait_for
from slocal.data import find_scenes, load_scene
from slocal.distill.config_files import resolve_preset
from slocal.io import process_lock
from slocal.runs import default_student_path
from slocal.teach import make_teacher
from slocal.teach.targets import load_targets, targets_dir


def _kill(proc) -> int:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.glob(".*.partial-*") if p.is_dir()] if folder.is_dir() else []


def test_kill_distill_after_first_checkpoint_then_resume_equals_uninterrupted(
    cli_data, cli_config, cli_model, tmp_path
):
    runs = tmp_path / "runs"
    model = default_student_path(runs, "tiny", resolve_preset("cnn"))
    ckpt = model.with_name("model.pt.ckpt")
    args = [
        "distill",
        "--scene",
        "tiny",
        "--student",
        "cnn",
        "--config",
        cli_config,
        "--iterations",
        TINY_ITERATIONS,
        "--device",
        "cpu",
        "--data-root",
        cli_data,
        "--runs",
        runs,
    ]
    proc = start_slocal(*args)
    assert wait_for(ckpt.is_file, proc), proc.communicate()[1]
    assert _kill(proc) == -signal.SIGKILL, "distill finished before it could be killed"
    assert not model.exists()

    r = run_slocal(*args, "--resume", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert 1 <= summary["resumed_from"] < TINY_ITERATIONS and summary["iterations"] == TINY_ITERATIONS
    resumed = torch.load(model, map_location="cpu", weights_only=True)["state_dict"]
    reference = torch.load(cli_model, map_location="cpu", weights_only=True)["state_dict"]
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference), (
        "resumed model differs from the uninterrupted one"
    )
    assert leftovers(runs) == []


def test_kill_teach_mid_way_then_rerun_rebuilds(cli_data, tmp_path):
    runs = tmp_path / "runs"
    args = ["teach", "--scene", "tiny", "--data-root", cli_data, "--runs", runs, "--json"]
    final = targets_dir(runs, load_scene(cli_data, "tiny"), make_teacher("depth"))
    for attempt in range(4):  # the tiny scene teaches in a fraction of a second: retry if the kill came late
        proc = start_slocal(*args, *(["--overwrite"] if attempt else []))
        assert wait_for(lambda: bool(_partials(final.parent)), proc), proc.communicate()[1]
        if _kill(proc) == -signal.SIGKILL:
            break
    else:
        raise AssertionError("teach always finished before it could be killed")
    assert not final.exists(), "a killed teach published its half-written cache"
    assert _partials(final.parent)  # the leftover the next run must clear

    r = run_slocal(*args)
    assert r.returncode == 0, r.stderr
    assert "using cached" not in r.stderr and json.loads(r.stdout)["frames"] == 12
    assert len(load_targets(final).frames) == 12
    assert leftovers(runs) == []


def test_kill_synth_then_rerun_builds_the_scene(tmp_path):
    data = tmp_path / "data"
    args = ["synth", "demo", "--frames", "4", "--queries", "1", "--data-root", data]
    proc = start_slocal(*args)
    assert wait_for(lambda: any(p.glob("data/*.pose.txt") for p in _partials(data)), proc, timeout=180), (
        proc.communicate()[1]
    )
    assert _kill(proc) == -signal.SIGKILL
    assert find_scenes(data) == [] and not (data / "demo").exists()

    r = run_slocal(*args, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mapping"] == 4 and len(load_scene(data, "demo").query) == 1
    assert leftovers(data) == []


def test_second_distill_on_the_same_model_stops_with_one_line(cli_data, cli_config, tmp_path):
    runs = tmp_path / "runs"
    lock = default_student_path(runs, "tiny", resolve_preset("cnn")).with_name("model.pt.lock")
    with process_lock(lock, "a test holding the model"):
        r = run_slocal(
            "distill",
            "--scene",
            "tiny",
            "--student",
            "cnn",
            "--config",
            cli_config,
            "--iterations",
            2,
            "--device",
            "cpu",
            "--data-root",
            cli_data,
            "--runs",
            runs,
        )
    err = lines(r.stderr)
    assert r.returncode == 1 and len(err) == 1, r.stderr
    assert str(lock) in err[0] and f"pid {os.getpid()}" in err[0] and "in use by another slocal process" in err[0]
    assert not lock.with_name("model.pt").exists()


def test_teach_waits_for_a_running_teach_or_stops_after_the_timeout(cli_data, tmp_path):
    runs = tmp_path / "runs"
    final = targets_dir(runs, load_scene(cli_data, "tiny"), make_teacher("depth"))
    lock = final.with_name(final.name + ".lock")
    args = ["teach", "--scene", "tiny", "--data-root", cli_data, "--runs", runs, "--json"]
    with process_lock(lock, "a test holding the targets"):
        r = run_slocal(*args, env={"SLOCAL_LOCK_TIMEOUT": "0.5"})
        errors = [line for line in lines(r.stderr) if line.startswith("error:")]
        assert r.returncode == 1 and "waiting up to 0.5 s" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(errors) == 1 and str(lock) in errors[0] and "after 0.5 s" in errors[0], r.stderr
        log = tmp_path / "waiting.log"
        proc = start_slocal(*args, log=log)
        assert wait_for(lambda: "waiting" in log.read_text(), proc), log.read_text()
        assert not final.exists()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log.read_text()
    assert f"pid {os.getpid()}" in log.read_text() and json.loads(out)["frames"] == 12


def test_two_teach_at_once_build_the_cache_once(cli_data, tmp_path):
    runs = tmp_path / "runs"
    args = ["teach", "--scene", "tiny", "--data-root", cli_data, "--runs", runs, "--json"]
    procs = [start_slocal(*args) for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in results]
    built = [e for _, e in results if "depth targets: 12 frames" in e]
    assert len(built) == 1, "both processes built the cache"
    final = Path(json.loads(results[0][0])["directory"])
    assert len(load_targets(final).frames) == 12 and leftovers(runs) == []


def test_bench_exits_1_when_a_scene_or_method_failed_after_writing_the_rest(cli_data, cli_model, tmp_path):
    runs = tmp_path / "runs"
    student = default_student_path(runs, "tiny", resolve_preset("cnn"))
    student.parent.mkdir(parents=True)
    student.write_bytes(cli_model.read_bytes())
    base = ["bench", "--data-root", cli_data, "--runs", runs]
    method, scene = run_many(
        [
            [*base, "--scenes", "tiny", "--methods", "cnn,nosuch", "--out", tmp_path / "m"],
            [*base, "--scenes", "missing", "--methods", "cnn", "--out", tmp_path / "s"],
        ],
        tmp_path / "run",
    )
    assert method.returncode == 1 and scene.returncode == 1, (method.stderr, scene.stderr)
    assert "Traceback" not in method.stderr + scene.stderr
    rows = {r["method"]: r for r in json.loads((tmp_path / "m" / "results.json").read_text())["rows"]}
    assert rows["cnn"]["failed"] is None and rows["cnn"]["n_queries"] == 2
    assert "unknown student" in rows["nosuch"]["failed"]
    assert "| tiny | nosuch | – | FAILED |" in method.stdout and "| tiny | cnn |" in method.stdout
    assert lines(method.stderr)[-1].startswith("1 failed: tiny / nosuch")
    assert "| missing | cnn | – | FAILED |" in (tmp_path / "s" / "results.md").read_text()


def test_bad_option_values_are_one_slocal_line(tmp_path):
    cases = {
        ("distill", "--scene", "x", "--minutes", "-1"): "--minutes",
        ("distill", "--scene", "x", "--iterations", "0"): "--iterations",
        ("synth", "demo", "--frames", "many"): "--frames",
        ("bench", "--out", "o", "--bogus"): "--bogus",
        ("synth",): "name",
    }
    for (args, option), out in zip(cases.items(), run_many([list(a) for a in cases], tmp_path)):
        err = lines(out.stderr)
        assert out.returncode == 2 and len(err) == 1, out.stderr
        assert err[0].startswith(f"error: slocal {args[0]}: ") and option in err[0] and "╭" not in out.stderr
