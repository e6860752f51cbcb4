import json
from pathlib import Path

from typer.testing import CliRunner

from slocal_cli.main import app


def test_cli_synth_then_scenes(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    args = ["synth", "demo", "--frames", "4", "--queries", "2", "--seed", "3", "--data-root", str(data), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scene"] == "demo" and out["mapping"] == 4 and out["query"] == 2 and out["seconds"] > 0
    assert Path(out["path"]) == data / "demo"
    listed = json.loads(runner.invoke(app, ["scenes", "--json", "--data-root", str(data)]).stdout)
    assert [(r["scene"], r["format"], r["mapping"], r["query"]) for r in listed] == [("demo", "12scenes", 4, 2)]
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "not empty" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
