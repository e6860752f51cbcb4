"""benchmarks/common.py: what the benchmark scripts' result files record."""

import importlib.util
import json

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
