"""benchmarks/common.py: what the benchmark scripts' result files record."""

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.cli_run import REPO
from slocal.bench.report import code_text


def _common():
    # benchmarks/ is a folder of scripts, not a package: load its helper module from its file.
    spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_results_records_code_date_machine_and_command(tmp_path, monkeypatch):
    common = _common()
    code = {"commit": "c0ffee" * 6 + "c0ff", "dirty": False, "package": "0.1.0"}
    machine = {"cpu": "test cpu", "cores": 2, "gpu": None, "code": code}
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "machine_info", lambda: machine)
    json_path, md_path = common.write_results("t", {"rows": [1]}, "{header}| a |\n")
    data = json.loads(json_path.read_text())
    assert data["machine"]["code"] == code and data["rows"] == [1]
    assert data["date"] and data["command"].startswith("python ")
    md = md_path.read_text()
    assert md.startswith(f"- code: {code_text(code)}\n- date (UTC): {data['date']}\n- command: `{data['command']}`\n")
    assert "- machine: test cpu, 2 cores;" in md and md.endswith("| a |\n")


def test_run_cli_returns_the_json_command_time_and_loads_and_exits_on_failure(tmp_path, monkeypatch):
    common = _common()
    monkeypatch.setenv("PYTHONPATH", f"{REPO / 'src'}:{REPO / 'cli'}")
    run = common.run_cli(["scenes", "--data-root", str(tmp_path)])
    assert run.output == []  # an empty data root holds no scenes
    assert run.command == f"slocal scenes --data-root {tmp_path} --json"
    assert run.seconds > 0 and len(run.load_before) == 3 and len(run.load_after) == 3
    with pytest.raises(SystemExit, match=r"`slocal scenes --data-root .*missing --json` failed with exit code [1-9]"):
        common.run_cli(["scenes", "--data-root", str(tmp_path / "missing")])


def test_paired_comparisons_count_poses_won_lost_and_closer():
    common = _common()
    first = np.array([0.01, 0.03, 0.06, np.inf])
    other = np.array([0.015, 0.01, 0.01, np.inf])
    results = [SimpleNamespace(t_err_m=t, r_err_deg=1.0) for t in other]
    first_results = [SimpleNamespace(t_err_m=t, r_err_deg=1.0) for t in first]
    hits, first_hits = common.hits_within(results, 0.02, 2.0), common.hits_within(first_results, 0.02, 2.0)
    assert hits.tolist() == [True, True, True, False] and first_hits.tolist() == [True, False, False, False]
    paired = common.paired_vs_first(hits, first_hits, "2cm2deg")
    assert (paired["won_2cm2deg_vs_first"], paired["lost_2cm2deg_vs_first"]) == (2, 0)
    assert paired["sign_test_p"] == pytest.approx(0.5)
    closer = common.closer_vs_first(other, first)  # both failed on the last pose: a tie, left out
    assert (closer["closer_vs_first"], closer["farther_vs_first"]) == (2, 1)
    assert closer["closer_sign_test_p"] == pytest.approx(1.0)
    # The rotation counts too: within 2 cm but 3 deg off is not a hit.
    assert not common.hits_within([SimpleNamespace(t_err_m=0.01, r_err_deg=3.0)], 0.02, 2.0)[0]
