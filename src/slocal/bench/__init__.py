"""Benchmark: pose errors and timings of students and baselines against ground truth.

``runner.run_bench`` localizes every query of each scene with each method;
``metrics`` turns per-query errors into the table's numbers; ``report`` writes
results.json/.csv/.md and the plots; ``machine`` describes where it ran.
"""
