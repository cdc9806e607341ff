"""The benchmark suite: one module per workload (see examples/README.md and
the registry interface at the top of cmlang/bench.py)."""
