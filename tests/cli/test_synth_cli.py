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


def test_cli_synth_second_room_under_one_folder(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    common = ["--frames", "3", "--queries", "1", "--data-root", str(data), "--json"]
    one = runner.invoke(app, ["synth", "home/kitchen", *common])
    two = runner.invoke(app, ["synth", "home/living", "--room", "2", *common])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert json.loads(one.stdout)["room"] == 1 and json.loads(two.stdout)["room"] == 2
    listed = json.loads(runner.invoke(app, ["scenes", "--json", "--data-root", str(data)]).stdout)
    assert [r["scene"] for r in listed] == ["home/kitchen", "home/living"]
    bad = runner.invoke(app, ["synth", "home/attic", "--room", "9", *common])
    assert bad.exit_code == 1 and "unknown room layout 9" in bad.output
