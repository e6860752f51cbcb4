import csv
import json
import math

import numpy as np
import pytest

from helpers.student_standin import random_pose
from slocal.bench.metrics import query_result
from slocal.bench.report import (
    ROW_FIELDS,
    average_rows,
    code_text,
    markdown_table,
    measured_columns,
    speed_text,
    write_report,
)


def row(scene, method, ms, **kw):
    base = {
        "scene": scene,
        "method": method,
        "teacher": "depth",
        "n_queries": 4,
        "median_t_cm": 2.0,
        "median_r_deg": 0.5,
        "acc_10cm5deg": 100.0,
        "acc_5cm5deg": 75.0,
        "acc_2cm2deg": 50.0,
        "acc_1cm1deg": 25.0,
        "ms_per_query": ms,
        "map_mb": 1.5,
    }
    base.update(kw)
    return base


def per_query(scene, methods):
    out = {}
    rng = np.random.default_rng(0)
    for k, m in enumerate(methods):
        qs = []
        for i in range(6):
            gt = random_pose(i)
            est = gt.copy()
            est[:3, 3] += rng.normal(scale=0.02 * (k + 1), size=3)
            qs.append(query_result(f"q{i}", None if i == 5 else est, gt, 30, {"total": 10.0}))
        out[(scene, m)] = qs
    return out


def test_report_files_have_the_exact_schema(tmp_path):
    rows = [
        row("s1", "cnn", 10.0),
        row("s1", "sift", 120.0, teacher=None, median_t_cm=math.inf),
        row("s1", "dust3r", 5000.0, timing_only=True, n_timed=3, median_t_cm=None, acc_1cm1deg=None),
        {"scene": "s2", "method": "cnn", "failed": "scene not found"},
    ]
    machine = {"cpu": "test", "cores": 2, "date": "2026-01-02T03:04:05Z", "code": {"commit": "ab" * 20, "dirty": True}}
    paths = write_report(tmp_path, rows, machine, "slocal bench --out x", per_query("s1", ["cnn", "sift"]))
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == {"rows", "machine", "command", "units"}
    assert data["command"] == "slocal bench --out x" and data["machine"]["cores"] == 2
    assert len(data["rows"]) == 4
    for r in data["rows"]:
        assert list(r)[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    sift = data["rows"][1]
    assert sift["median_t_cm"] is None  # inf is not valid JSON
    assert sift["speedup_vs_student"] == pytest.approx(12.0)
    assert data["rows"][3]["failed"] == "scene not found" and data["rows"][3]["n_queries"] is None

    with open(paths["csv"]) as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["method"] for r in csv_rows] == ["cnn", "sift", "dust3r", "cnn"]
    assert csv_rows[1]["median_t_cm"] == "inf" and list(csv_rows[0])[: len(ROW_FIELDS)] == list(ROW_FIELDS)
    # Every row says what it measured: the code's commit and dirty flag, and the date.
    assert list(csv_rows[0])[-3:] == ["commit", "dirty", "date"]
    assert {(r["commit"], r["dirty"], r["date"]) for r in csv_rows} == {("ab" * 20, "True", "2026-01-02T03:04:05Z")}

    md = (tmp_path / "results.md").read_text()
    assert "×12 slower" in md and "×500 slower" in md and "reference" in md
    assert "timing only" in md and "s2 / cnn: FAILED — scene not found" in md
    assert md.endswith(
        f"- code: commit {'ab' * 20} (dirty: uncommitted changes)\n- date (UTC): 2026-01-02T03:04:05Z\n"
        "- machine: test, 2 cores\n- command: `slocal bench --out x`\n"
    )
    assert len(paths["plots"]) == 2 and all(p.is_file() and p.read_bytes()[:4] == b"\x89PNG" for p in paths["plots"])
    pq = json.loads(paths["per_query"].read_text())
    assert len(pq) == 12 and pq[5]["success"] is False and pq[5]["t_err_cm"] is None
    assert pq[0]["t_err_cm"] < 10 and len(pq[0]["center_gt"]) == 3


def test_speed_text():
    assert speed_text(12.3, False) == "×12 slower"
    assert speed_text(2.5, False) == "×2.5 slower"
    assert speed_text(0.25, False) == "×4.0 faster"
    assert speed_text(1.0, True) == "reference"
    assert speed_text(None, False) == "–"


def test_average_rows_only_for_methods_on_every_scene():
    rows = [
        row("a", "cnn", 10.0, acc_5cm5deg=80.0),
        row("b", "cnn", 20.0, acc_5cm5deg=60.0, median_t_cm=4.0),
        row("a", "sift", 100.0),
        {"scene": "b", "method": "sift", "failed": "no features"},
    ]
    avg = average_rows(rows)
    assert [r["method"] for r in avg] == ["cnn"]
    assert avg[0]["scene"] == "average" and avg[0]["acc_5cm5deg"] == pytest.approx(70.0)
    assert avg[0]["median_t_cm"] == pytest.approx(3.0) and avg[0]["ms_per_query"] == pytest.approx(15.0)
    assert avg[0]["n_queries"] == 8
    assert "| average | cnn |" in markdown_table(rows + avg)


def test_model_units_are_never_printed_as_cm(tmp_path):
    rows = [
        row(
            "colmap",
            "cnn",
            10.0,
            units="model units",
            median_t_cm=None,
            median_t_units=0.0123,
            acc_10cm5deg=None,
            acc_5cm5deg=None,
            acc_2cm2deg=None,
            acc_1cm1deg=None,
        ),
        row("metric", "cnn", 10.0, units="m"),
    ]
    md = markdown_table(rows)
    colmap_line = next(line for line in md.splitlines() if line.startswith("| colmap"))
    assert "0.0123 units" in colmap_line and "cm" not in colmap_line
    assert "| 2.0 cm |" in md and "colmap: errors in model units" in md
    write_report(tmp_path, rows, {}, "x", per_query("colmap", ["cnn"]), scales={"colmap": None})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["units"] == {"colmap": "model units", "metric": "m"}
    pq = json.loads((tmp_path / "per_query.json").read_text())
    assert pq[0]["t_err_cm"] is None and pq[0]["t_err_units"] > 0


def test_ransac_settings_are_stated_under_the_table():
    student = row("s", "ace", 10.0, ransac_threshold_px=20.0, ransac_max_iterations=500)
    sift = row("s", "sift", 100.0, ransac_threshold_px=10.0, ransac_max_iterations=10000)
    assert "RANSAC (threshold / max iterations): ace 20 px / 500, sift 10 px / 10000" in markdown_table([student, sift])
    same = markdown_table([student, {**sift, "ransac_threshold_px": 20.0, "ransac_max_iterations": 500}])
    assert "RANSAC: 20 px at 640 px width, at most 500 iterations for every method" in same


def test_ransac_on_a_subset_of_the_matches_is_stated():
    student = row(
        "s", "ace", 10.0, ransac_threshold_px=20.0, ransac_max_iterations=500, ransac_points=640, refine_px=None
    )
    sift = row(
        "s", "sift", 100.0, ransac_threshold_px=10.0, ransac_max_iterations=10000, ransac_points=None, refine_px=None
    )
    text = markdown_table([student, sift])
    assert "ace 20 px / 500 on 640 matches, then poselib on all, sift 10 px / 10000" in text


def test_code_text_says_what_is_known():
    sha = "0123456789abcdef" * 2 + "01234567"
    assert code_text({"commit": sha, "dirty": False}) == f"commit {sha} (clean)"
    assert code_text({"commit": sha, "dirty": None}) == f"commit {sha} (dirty flag unknown)"
    # An installed wheel: no git checkout, the package version instead.
    assert code_text({"commit": None, "dirty": None, "package": "0.1.0"}) == (
        "slocal 0.1.0, commit unknown (not run from a git checkout)"
    )
    assert code_text(None) == "slocal version unknown, commit unknown (not run from a git checkout)"
    assert measured_columns({"date": "d"}) == {"commit": None, "dirty": None, "date": "d"}
