"""Cold ``feeds build``: empty state and output, every feed written; optionally Hugo beside it.

Each run deletes the state database and the output folder, then times
``python -m feeds build --config …`` as a subprocess (wall clock, peak memory of its process
tree). Every ``--workers`` setting is run ``--runs`` times, interleaved; the medians are
reported, the parallel speed-up, and whether every setting wrote the same bytes. With
``--hugo``, the same articles (``bench.hugo_site``) are built by ``hugo`` in the same loop and
the ratio feeds/Hugo of the medians is printed (below 1 means feeds is faster).

    .venv/bin/python -m bench.bench_cold --n 10000 --runs 5 --hugo
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    PYTHON,
    ROOT,
    Run,
    add_corpus_arguments,
    add_dedupe_argument,
    check,
    clear,
    config_extra,
    corpus,
    corpus_options,
    find_hugo,
    hugo_build,
    machine,
    mb,
    median,
    reproduce,
    run_measured,
    write_config,
)
from bench.hugo_site import write_site


def output_digest(output: Path) -> str:
    """One hash over every file the build wrote (relative path and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in output.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(output)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def feeds_command(config: Path, workers: str) -> list[str]:
    cmd = [PYTHON, "-m", "feeds", "build", "--config", str(config)]
    return cmd if workers == "default" else [*cmd, "--workers", workers]


def describe(label: str, n: int, runs: list[Run]) -> str:
    seconds = [r.seconds for r in runs]
    best = median(seconds)
    return (
        f"{label:<22} n={n:<7} runs={len(runs)} median={best:.2f}s "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}) {n / best:,.0f} articles/s; "
        f"peak: largest process {mb(max(r.largest_kb for r in runs))}, "
        f"tree RSS {mb(max(r.tree.rss_kb for r in runs))}, "
        f"tree PSS {mb(max(r.tree.pss_kb for r in runs))}, "
        f"{max(r.tree.processes for r in runs)} processes"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="articles (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument(
        "--workers", default="default,1", help="comma list: 'default' (CPUs) and/or numbers"
    )
    parser.add_argument("--hugo", action="store_true", help="also build the corpus with hugo")
    add_corpus_arguments(parser, keep_help="keep corpus and outputs")
    add_dedupe_argument(parser)
    args = parser.parse_args(argv)
    extra = config_extra(args)
    hugo = find_hugo(parser, args.hugo)
    opts = corpus_options(args)
    articles = corpus(args.workdir, args.n, **opts)
    run_dir = args.workdir / f"cold-n{args.n}"
    settings = [w.strip() for w in args.workers.split(",") if w.strip()]
    site = run_dir / "hugo"
    if args.hugo:
        clear(site)
        write_site(site, args.n, **opts)
    results: dict[str, list[Run]] = {w: [] for w in settings}
    digests: dict[str, set[str]] = {w: set() for w in settings}
    hugo_runs: list[Run] = []
    print(f"# machine: {machine()}", flush=True)
    for run in range(args.runs):
        for workers in settings:
            out, state = run_dir / f"out-{workers}", run_dir / f"state-{workers}"
            clear(out, state)
            path = run_dir / f"feeds-{workers}.toml"
            config = write_config(path, articles, out, state / "db", extra=extra)
            result = check(run_measured(feeds_command(config, workers), cwd=ROOT), "feeds build")
            results[workers].append(result)
            digests[workers].add(output_digest(out))
            print(f"# run {run + 1} feeds workers={workers}: {result.seconds:.2f}s "
                  f"{result.stdout.strip()}", flush=True)  # fmt: skip
        if hugo is not None:
            hugo_runs.append(hugo_build(hugo, site))
            print(f"# run {run + 1} hugo: {hugo_runs[-1].seconds:.2f}s", flush=True)
    print(f"cold build, {args.n} articles; {machine()}")
    for workers in settings:
        print(describe(f"feeds workers={workers}", args.n, results[workers]))
    if args.hugo:
        print(describe("hugo", args.n, hugo_runs))
        for workers in settings:
            ratio = median([r.seconds for r in results[workers]]) / median(
                [r.seconds for r in hugo_runs]
            )
            print(f"ratio feeds(workers={workers})/hugo: {ratio:.2f} (below 1: feeds is faster)")
    if "1" in settings:
        single = median([r.seconds for r in results["1"]])
        for workers in settings:
            if workers != "1":
                speedup = single / median([r.seconds for r in results[workers]])
                print(f"parallel speed-up workers={workers} vs 1: {speedup:.2f}x")
    all_digests = set().union(*digests.values())
    print(
        "same output bytes for every run and workers setting: "
        + ("yes" if len(all_digests) == 1 else f"NO ({sorted(all_digests)})")
    )
    print(reproduce("bench.bench_cold", sys.argv[1:] if argv is None else argv))
    if not args.keep:
        clear(run_dir, articles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
