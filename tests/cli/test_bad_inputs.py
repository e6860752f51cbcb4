"""The bad-input corpus through the real CLI: exit code 1, one stderr line naming the file, nothing written.

Each case of ``tests/helpers/bad_corpus.py`` runs as its own process (``helpers.cli_run.run_many``);
together they take well under a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.bad_corpus import CASES, Good, build_corpus
from helpers.cli_run import leftovers, lines, run_many, run_slocal


@pytest.fixture(scope="module")
def corpus_outcomes(cli_data, cli_model, tmp_path_factory):
    """Build the corpus in a temporary folder and run every case once: {case: (outcome, named file, runs folder)}."""
    root = tmp_path_factory.mktemp("bad")
    onnx = root / "_good" / "model.onnx"
    r = run_slocal(
        "export", "--scene", "tiny", "--model", cli_model, "--format", "onnx", "--out", onnx, "--data-root", cli_data
    )
    assert r.returncode == 0, r.stderr
    cases = build_corpus(root, Good(cli_data / "tiny", cli_model, onnx))
    outcomes = run_many([args for args, _ in cases.values()], root / "_run")
    return {name: (out, named, root / name / "runs") for (name, (_, named)), out in zip(cases.items(), outcomes)}


def test_every_case_is_built(corpus_outcomes):
    assert set(corpus_outcomes) == {c.name for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_naming_the_file(corpus_outcomes, case):
    out, named, runs = corpus_outcomes[case.name]
    err = lines(out.stderr)
    assert out.returncode == 1, f"exit {out.returncode}; stderr:\n{out.stderr}"
    assert len(err) == 1, f"expected one stderr line, got:\n{out.stderr}"
    line = err[0]
    assert line.startswith("error: ") and "Traceback" not in out.stderr
    assert str(named) in line, f"{named} not named in: {line}"
    assert all(w in line.lower() for w in case.words), f"{case.words} not all in: {line}"
    assert out.stdout == ""
    # Nothing written but lock files (kept by design: see slocal.io.process_lock).
    written = [p for p in Path(runs).rglob("*") if p.is_file()] if Path(runs).exists() else []
    assert [p for p in written if p.suffix != ".lock"] == [] and leftovers(runs) == []


def test_yaml_number_in_exponent_notation_is_a_number(cli_data, tmp_path):
    """PyYAML reads `lr: 1e-3` as a string; the config loader must take it as 0.001, not fail in the optimizer."""
    cfg = tmp_path / "lr.yaml"
    cfg.write_text(
        "student:\n  name: t\n  widths: [8, 8, 16, 16]\n  blocks8: 1\n"
        "  head_width: 16\n  head_layers: 1\n  max_side: 32\n"
        "train:\n  lr: 1e-3\n  val_frames: 0\n  precision: fp32\n  checkpoint_every_s: 1.0e9\n"
    )
    r = run_slocal(
        "distill",
        "--scene",
        "tiny",
        "--student",
        "cnn",
        "--config",
        cfg,
        "--iterations",
        1,
        "--device",
        "cpu",
        "--data-root",
        cli_data,
        "--runs",
        tmp_path / "runs",
        "--json",
    )
    assert r.returncode == 0, r.stderr
