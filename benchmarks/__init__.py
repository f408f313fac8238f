"""Side-by-side benchmarks: our fake provider vs uvicorn + starlette streaming the same bytes.

Run one with `python -m benchmarks.bench_throughput` (or `bench_paced`, `bench_memory`), or
all with `python -m benchmarks.run_all`; add `--quick` for a few-second smoke run. See
benchmarks/README.md for what each figure means.
"""
