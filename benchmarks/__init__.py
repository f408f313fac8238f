"""Side-by-side benchmarks: our fake provider vs uvicorn + starlette streaming the same bytes.

Run one with `python -m benchmarks.bench_throughput` (or `bench_paced`, `bench_cost_curve`,
`bench_memory`, ...), or the figures of the README with `python -m benchmarks.run_all`; add
`--quick` for a short smoke run, `--record` to store the figures in `benchmarks/results.json`
and the READMEs. See benchmarks/README.md for what each figure means.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: benchmarks run their subprocesses from here."""
