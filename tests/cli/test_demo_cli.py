"""`slocal demo` end to end through the real CLI, on a small room rendered beforehand.

The demo renders its room only when the data root lacks it, so the 12-frame 128x96 room of the other
CLI tests stands in for its 100-frame one; everything else is the demo as users run it (teach, the
ace-lite0-std student within its minutes, bench against SIFT), with a budget of 45 s.
"""

import json
import shlex

import pytest

from helpers.cli_run import lines, run_slocal
from helpers.distill_fixtures import TINY_SCENE
from slocal.data.synth import render_scene
from slocal.demo import DemoConfig

# Encoding 192 buffer passes comes out of the budget: about 10 s on two idle cores, 30 s on a loaded machine.
MINUTES = 0.75


@pytest.mark.slow
def test_demo_runs_end_to_end_and_leaves_a_student_localize_finds(tmp_path):
    config = DemoConfig()
    data, runs = tmp_path / "data", tmp_path / "runs"
    render_scene(data / config.scene, TINY_SCENE, scene_id=config.scene)
    r = run_slocal("demo", "--minutes", MINUTES, "--data-root", data, "--runs", runs, timeout=600)
    assert r.returncode == 0, r.stderr

    report = json.loads((runs / "demo-bench" / "results.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == [config.student, "sift"] == list(config.methods)
    for row in rows.values():
        assert row["scene"] == config.scene and row["failed"] is None and row["n_queries"] == 2
    # Within its budget (the last step may end a moment after it).
    assert rows[config.student]["teacher"] == "depth" and 0 < rows[config.student]["distill_minutes"] < 1.1 * MINUTES
    assert len(report["machine"]["code"]["commit"]) == 40  # the results name the code they measured
    model = runs / config.scene / "students" / config.student / "model.pt"
    assert model.is_file() and rows[config.student]["model"] == str(model)
    out = lines(r.stdout)
    assert any(line.startswith(f"| {config.scene} | {config.student} | depth | 2 |") for line in out), r.stdout

    # The last line is the command that localizes a query photo with the demo's student: it runs as printed.
    label, _, command = out[-1].partition(": ")
    assert label == "localize with the demo's student" and f"--student {config.student}" in command
    args = shlex.split(command)
    assert args[:2] == ["slocal", "localize"]
    loc = run_slocal(*args[1:])
    assert not any(e.startswith("error:") for e in lines(loc.stderr)), loc.stderr
    (line,) = lines(loc.stdout)
    fields = line.split()
    assert fields[0] == args[2] and (fields[1:2] == ["FAILED"] and len(fields) == 3 or len(fields) == 9), line
    # A 45-second student may or may not localize this query; the exit code must say which.
    assert loc.returncode == (1 if fields[1] == "FAILED" else 0), loc.stderr

    # Plain localize (the default student, not the demo's) says in one line which --student to pass.
    plain = run_slocal("localize", args[2], "--scene", config.scene, "--runs", runs)
    assert plain.returncode == 1 and plain.stdout == ""
    (error,) = lines(plain.stderr)
    assert error.startswith("error: ") and f"pass --student {config.student}" in error, error


def test_demo_refuses_two_budgets_in_one_line(tmp_path):
    r = run_slocal("demo", "--iterations", 100, "--minutes", 1, "--data-root", tmp_path / "data", "--runs", tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert lines(r.stderr) == ["error: give the training budget as --iterations or --minutes, not both"]
    assert not (tmp_path / "data").exists()  # refused before rendering anything
