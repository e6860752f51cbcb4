"""Helpers shared by the tests (scenes, stand-in students, the CLI runner, the bad-input corpus); no tests here.

pytest puts ``tests/`` on the path (``pythonpath`` in pyproject.toml), so a test imports them as
``from helpers.cli_run import run_slocal``.
"""
