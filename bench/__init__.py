"""Benchmarks for issue 5: run them as modules from the project folder, e.g.

    .venv/bin/python -m bench.gen_corpus --n 1000 /tmp/bench/corpus
    .venv/bin/python -m bench.bench_cold --n 10000 --hugo

Every script prints its figures and a ``reproduce:`` line with the exact command.
"""
