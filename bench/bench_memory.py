"""Peak memory and time growth of a cold ``feeds build`` over archive sizes (linear?).

For each size the corpus is generated (once), then a cold build (empty state and output) is
run ``--runs`` times; the median time, the time per article and the peak memory are printed,
and for each step up in size the growth of time against the growth of N (1.00 = linear) and
the growth of memory. Issue 5 asks for linear time and a peak under 150 MB at 100,000.

    .venv/bin/python -m bench.bench_memory --sizes 10000,100000 --runs 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence

from bench.bench_cold import feeds_command
from bench.common import (
    ROOT,
    Run,
    add_corpus_arguments,
    add_dedupe_argument,
    archive_dir,
    check,
    clear,
    config_extra,
    corpus,
    corpus_options,
    machine,
    mb,
    median,
    reproduce,
    run_measured,
    write_config,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300,1000", help="comma list of N (default 300,1000)")
    parser.add_argument("--runs", type=int, default=1, help="runs per size (default 1)")
    parser.add_argument("--workers", default="default", help="'default' (CPUs) or a number")
    add_corpus_arguments(parser, keep_help="keep the corpora and their last builds (reused)")
    add_dedupe_argument(parser)
    args = parser.parse_args(argv)
    extra = config_extra(args)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    opts = corpus_options(args)
    rows: list[tuple[int, float, Run]] = []
    print(f"# machine: {machine()}", flush=True)
    for n in sizes:
        articles = corpus(args.workdir, n, **opts)
        run_dir = args.workdir / f"memory-n{n}"
        runs: list[Run] = []
        for _ in range(args.runs):
            clear(run_dir)
            config = write_config(
                run_dir / "feeds.toml", articles, run_dir / "out", run_dir / "state" / "db",
                extra=extra,
            )  # fmt: skip
            cmd = feeds_command(config, args.workers)
            runs.append(check(run_measured(cmd, cwd=ROOT), "feeds build"))
            print(f"# n={n}: {runs[-1].seconds:.2f}s {runs[-1].stdout.strip()}", flush=True)
        worst = max(runs, key=lambda r: r.tree.pss_kb)
        rows.append((n, median([r.seconds for r in runs]), worst))
        cached = archive_dir(args.workdir, articles, extra)
        if args.keep and not (cached / ".complete").exists():  # reused by the other benches
            clear(cached)
            run_dir.rename(cached)
            (cached / ".complete").write_text("")
        clear(run_dir)
        if not args.keep:
            clear(articles)
    print(f"cold build memory and growth, workers={args.workers}; {machine()}")
    for n, seconds, run in rows:
        print(
            f"n={n:<7} median={seconds:.2f}s {seconds / n * 1e6:,.0f} us/article; peak: largest "
            f"process {mb(run.largest_kb)}, tree RSS {mb(run.tree.rss_kb)}, "
            f"tree PSS {mb(run.tree.pss_kb)}, {run.tree.processes} processes"
        )
    for (n0, s0, r0), (n1, s1, r1) in itertools.pairwise(rows):
        print(
            f"growth {n0} -> {n1}: N x{n1 / n0:.1f}, time x{s1 / s0:.2f} "
            f"(time/N ratio {s1 / s0 / (n1 / n0):.2f}; 1.00 = linear), "
            f"peak PSS x{r1.tree.pss_kb / max(r0.tree.pss_kb, 1):.2f}"
        )
    print(reproduce("bench.bench_memory", sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
