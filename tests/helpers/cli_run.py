"""Run the real ``slocal`` CLI in subprocesses, on the sources under test.

``run_slocal``/``start_slocal`` start ``python -m slocal_cli.main`` with ``PYTHONPATH``
pointing at this checkout's ``src`` and ``cli``. ``run_many`` runs many short
commands in forked children of one interpreter that has imported the CLI once:
each command is still its own process (own exit code, own stdout/stderr file
descriptors, so C-library messages on stderr are caught too), without paying
the ~4 s import of torch for every one of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # tests/helpers/ -> the repository
# A leftover of an interrupted write: a temporary file, a partial folder or a replaced one.
LEFTOVER_MARKERS = (".tmp", ".partial-", ".old-")
# Iterations of the shared tiny model (tests/cli/conftest.py); the kill-and-resume test trains as many.
TINY_ITERATIONS = 40


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout first on the path, one thread."""
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(REPO / "cli")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    for key in ("SLOCAL_DATA", "SLOCAL_RUNS", "SLOCAL_LOCK_TIMEOUT"):
        env.pop(key, None)
    env.update(extra)
    return env


def slocal_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "slocal_cli.main", *(str(a) for a in args)]


def run_slocal(*args: object, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``slocal ARGS`` to completion; text stdout/stderr captured."""
    return subprocess.run(
        slocal_argv(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {}))
    )


def start_slocal(*args: object, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``slocal ARGS`` in the background.

    stdout is piped; stderr is piped, or written to ``log`` (readable while it runs).
    """
    stderr = subprocess.PIPE if log is None else open(log, "w")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        slocal_argv(*args), stdout=subprocess.PIPE, stderr=stderr, text=True, env=cli_env(**(env or {}))
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, poll_s: float = 0.005) -> bool:
    """Poll ``predicate()`` until true; False if ``proc`` ended first or on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll_s)
    return False


def lines(text: str) -> list[str]:
    """Non-blank lines."""
    return [line for line in text.splitlines() if line.strip()]


def leftovers(root: Path) -> list[Path]:
    """Temporary files and partial folders anywhere under ``root``."""
    return sorted(p for p in Path(root).rglob("*") if any(m in p.name for m in LEFTOVER_MARKERS))


@dataclass
class Outcome:
    """What one command of ``run_many`` did."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time
    cpu_seconds: float


_FORK_RUNNER = r"""
import json, os, sys, time
from slocal_cli.main import main

jobs = json.load(open(sys.argv[1]))
results = []
for i, argv in enumerate(jobs):
    out, err = f"{sys.argv[2]}.{i}.out", f"{sys.argv[2]}.{i}.err"
    sys.stdout.flush(); sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            fo, fe = os.open(out, flags), os.open(err, flags)
            os.dup2(fo, 1); os.dup2(fe, 2)
            sys.argv = ["slocal", *argv]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    results.append({"returncode": os.waitstatus_to_exitcode(status),
                    "stdout": open(out).read(), "stderr": open(err).read(),
                    "seconds": time.monotonic() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime})
json.dump(results, open(sys.argv[2], "w"))
"""


def run_many(jobs: list[list[object]], workdir: Path, timeout: float = 600) -> list[Outcome]:
    """Run each ``slocal ARGS`` of ``jobs`` as its own forked process of one CLI interpreter.

    A child that raises prints its traceback on its stderr and exits 1, as ``python -m`` would.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    argvs = [[str(a) for a in job] for job in jobs]
    (workdir / "jobs.json").write_text(json.dumps(argvs))
    done = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER, str(workdir / "jobs.json"), str(workdir / "results.json")],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((workdir / "results.json").read_text())
    return [
        Outcome(argv, r["returncode"], r["stdout"], r["stderr"], r["seconds"], r["cpu_seconds"])
        for argv, r in zip(argvs, results)
    ]
