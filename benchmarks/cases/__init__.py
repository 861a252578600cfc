"""The bench's cases: each a module with `run(bench, ctx)`, run in order by benchmarks/bench.py."""
