"""The benchmark suite behind `make bench` / `make bench-quick` (entry: benchmarks/run_bench.py).

Modules: common (run context, records, studies, references), stats (pure helpers), headline
(section 1), axes (sections 2 and 3), sharing (sections 4 and 5), costmodel (section 6), render
and render_checks (RESULTS.md sections and figures, used by benchmarks/make_results.py).
"""
