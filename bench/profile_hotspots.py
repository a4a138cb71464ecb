"""Where the time goes: a cold build or single-article updates, profiled in one process.

``--scenario cold`` runs ``Pipeline.sync()`` with one worker (all parsing in this process, so
the profile sees everything) on an empty state. ``--scenario update`` builds the archive first
(``feeds build``, or reuses one kept by another benchmark's ``--keep``), then writes
``--repeats`` new articles one at a time and runs what the service runs for each watcher
batch: ``Pipeline.ingest([path])`` then ``Pipeline.render()``.

Two views are printed:

* stages: wall time of the pipeline's stages, measured by wrapping those functions (cheap,
  no profiler running; nested stages are included in their parents);
* hot spots: the functions with the most self time and most inclusive time under a profiler —
  pyinstrument (sampling, low overhead) when it is importable, else cProfile (deterministic;
  inflates code that makes many small Python calls).

pyinstrument is not a project dependency; to use it, run this script with a separate venv:

    python3 -m venv /tmp/profvenv && /tmp/profvenv/bin/pip install pyinstrument <feeds' deps>
    PYTHONPATH=. /tmp/profvenv/bin/python -m bench.profile_hotspots --scenario cold --n 2000
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    add_corpus_arguments,
    add_dedupe_argument,
    built_archive,
    clear,
    config_extra,
    corpus,
    corpus_options,
    drop_corpus,
    machine,
    reproduce,
    write_config,
)
from bench.gen_corpus import article_spec, write_article
from feeds.config import load_config
from feeds.pipeline import Pipeline
from feeds.store import open_store

# (label, module, attribute): functions timed as stages; "Class.method" attributes allowed.
# Stages the code no longer has are left out of the report (the code moves; the bench should not
# break with it).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("scan (walk + stat + diff)", "feeds.pipeline", "Pipeline.scan"),
    ("process_file (parse + normalize)", "feeds.pipeline", "process_file"),
    ("  parse_file (read, decode, front matter)", "feeds.pipeline", "parse_file"),
    ("  normalize", "feeds.pipeline", "normalize"),
    ("    markdown_to_html", "feeds.normalize", "markdown_to_html"),
    ("    clean_body (lxml + nh3)", "feeds.normalize", "clean_body"),
    ("Ingestor.apply (dedupe, topics, store)", "feeds.ingest", "Ingestor.apply"),
    ("  fingerprint", "feeds.ingest", "fingerprint"),
    ("  body_key", "feeds.ingest", "body_key"),
    ("  identity (fingerprint, body key)", "feeds.ingest", "identity"),
    ("  shingles (near-duplicates)", "feeds.ingest", "shingles"),
    ("  encode_article", "feeds.ingest", "encode_article"),
    ("  decode_article (ingest)", "feeds.ingest", "decode_article"),
    ("  TopicMatcher.match", "feeds.classify", "TopicMatcher.match"),
    ("render_feeds", "feeds.pipeline", "render_feeds"),
    ("  store.feed_count (kept sizes)", "feeds.store.sqlite", "SQLiteStore.feed_count"),
    ("  store.feed_items", "feeds.store.sqlite", "SQLiteStore.feed_items"),
    ("  render_rss", "feeds.outputs", "render_rss"),
    ("  render_atom", "feeds.outputs", "render_atom"),
    ("  publish_many (compare, write, fsync)", "feeds.outputs", "publish_many"),
)


class StageTimer:
    """Wraps the STAGES functions in place and sums their wall time and calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        return timed

    def __enter__(self) -> StageTimer:
        for label, module_name, attribute in STAGES:
            owner: Any = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            namespace = vars(owner) if owner is not None else {}
            if not callable(namespace.get(name)):
                continue
            original = namespace[name]
            setattr(owner, name, self._wrap(label, original))
            self._undo.append(functools.partial(setattr, owner, name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def report(self, total: float) -> list[str]:
        lines = [f"stages (wall time, total {total:.3f}s):"]
        for label, _, _ in STAGES:
            if self.calls.get(label):
                seconds = self.seconds[label]
                lines.append(
                    f"  {label:<44} {seconds:8.3f}s {seconds / total:6.1%} "
                    f"({self.calls[label]} calls)"
                )
        return lines


@dataclass(slots=True)
class Hotspot:
    where: str  # file:line(function)
    self_seconds: float
    total_seconds: float


def _short(path: str | None) -> str:
    if not path:
        return "?"
    for marker in ("/site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def from_cprofile(profile: cProfile.Profile) -> tuple[list[Hotspot], float]:
    stats = pstats.Stats(profile)
    raw: Any = stats.stats  # type: ignore[attr-defined]
    spots = [
        Hotspot(f"{_short(file)}:{line}({func})", tt, ct)
        for (file, line, func), (_, _, tt, ct, _) in raw.items()
    ]
    total = sum(s.self_seconds for s in spots)
    return spots, total


def from_pyinstrument(session: Any) -> tuple[list[Hotspot], float]:
    root = session.root_frame(trim_stem=False)
    selfs: dict[str, float] = defaultdict(float)
    totals: dict[str, float] = defaultdict(float)

    def visit(frame: Any, active: frozenset[str]) -> None:
        key = f"{_short(frame.file_path)}:{frame.line_no}({frame.function})"
        if not frame.is_synthetic:
            selfs[key] += frame.total_self_time
            if key not in active:  # recursion counts once
                totals[key] += frame.time
            active = active | {key}
        for child in frame.children:
            visit(child, active)

    if root is not None:
        visit(root, frozenset())
    spots = [Hotspot(k, selfs[k], totals[k]) for k in totals]
    return spots, (root.time if root is not None else 0.0)


@contextlib.contextmanager
def profiled(kind: str) -> Iterator[dict[str, Any]]:
    box: dict[str, Any] = {}
    if kind == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            yield box
        finally:
            profiler.stop()
            box["spots"] = from_pyinstrument(profiler.last_session)
            box["text"] = profiler.output_text(unicode=False, color=False, show_all=False)
    else:
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield box
        finally:
            profile.disable()
            box["spots"] = from_cprofile(profile)


def hotspot_lines(spots: list[Hotspot], total: float, top: int) -> list[str]:
    lines = [f"top {top} by self time (share of {total:.3f}s profiled):"]
    for spot in sorted(spots, key=lambda s: -s.self_seconds)[:top]:
        lines.append(f"  {spot.self_seconds / total:6.1%} {spot.self_seconds:8.3f}s  {spot.where}")
    lines.append(f"top {top} project functions by inclusive time:")
    ours = [s for s in spots if s.where.startswith(("feeds/", "bench/"))]
    for spot in sorted(ours, key=lambda s: -s.total_seconds)[:top]:
        lines.append(
            f"  {spot.total_seconds / total:6.1%} {spot.total_seconds:8.3f}s  {spot.where}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["cold", "update"], default="cold")
    parser.add_argument("--n", type=int, default=300, help="archive size (default 300)")
    parser.add_argument("--repeats", type=int, default=10, help="update: new articles")
    parser.add_argument("--profiler", choices=["auto", "pyinstrument", "cprofile"], default="auto")
    parser.add_argument("--top", type=int, default=20)
    add_corpus_arguments(parser, keep_help="keep the corpus")
    add_dedupe_argument(parser)
    args = parser.parse_args(argv)
    extra = config_extra(args)
    kind = args.profiler
    if kind == "auto":
        kind = "pyinstrument" if importlib.util.find_spec("pyinstrument") else "cprofile"
    opts = corpus_options(args)
    articles = corpus(args.workdir, args.n, **opts)
    run_dir = args.workdir / f"profile-{args.scenario}-n{args.n}"
    clear(run_dir)
    config_path = write_config(
        run_dir / "feeds.toml", articles, run_dir / "out", run_dir / "state" / "db", extra=extra
    )
    config = load_config(config_path, environ={})
    added: list[Path] = []
    print(f"# machine: {machine()}; profiler: {kind}", flush=True)

    def one_round(profiler: str | None) -> tuple[float, float, StageTimer, dict[str, Any]]:
        """One measured pass (wall and process CPU seconds); the stage timer only runs when no
        profiler does. CPU time (all threads) says more than wall time on a shared machine."""
        timer = StageTimer()
        box: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            if profiler is None:
                stack.enter_context(timer)
            else:
                box = stack.enter_context(profiled(profiler))
            started, cpu_started = time.perf_counter(), time.process_time()
            if args.scenario == "cold":
                clear(run_dir / "out", run_dir / "state")
                store = open_store(config.state)
                try:
                    Pipeline(config, store, workers=1).sync()
                finally:
                    store.close()
            else:
                for _ in range(args.repeats):
                    spec = article_spec(args.n + len(added), seed=args.seed, dup_rate=0,
                                        topic_rate=1)  # fmt: skip
                    path, _ = write_article(articles, spec)
                    added.append(path)
                    pipeline.ingest([str(path)])
                    pipeline.render()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        return elapsed, cpu, timer, box

    store = None
    try:
        if args.scenario == "update":
            built_archive(args.workdir, articles, run_dir, extra)
            store = open_store(config.state)
            pipeline = Pipeline(config, store)
            warm = article_spec(10**8, seed=args.seed, dup_rate=0, topic_rate=1)
            path, _ = write_article(articles, warm)  # imports and caches warmed, untimed
            added.append(path)
            pipeline.ingest([str(path)])
            pipeline.render()
        elapsed, cpu, timer, _ = one_round(None)
        per = (
            f", {elapsed / args.repeats * 1000:.1f} ms per article "
            f"(CPU {cpu / args.repeats * 1000:.1f} ms)"
            if store
            else f" (CPU {cpu:.3f}s)"
        )
        print(f"{args.scenario}, n={args.n}: {elapsed:.3f}s without profiler{per}")
        lines = timer.report(elapsed)
        elapsed_p, _, _, box = one_round(kind)
        spots, total = box["spots"]
        lines += hotspot_lines(spots, total, args.top)
        print("\n".join(lines))
        if "text" in box:
            (args.workdir / f"profile-{args.scenario}-n{args.n}.txt").write_text(box["text"])
            print(f"# pyinstrument tree: {args.workdir}/profile-{args.scenario}-n{args.n}.txt")
        print(f"# profiled run took {elapsed_p:.3f}s")
    finally:
        if store is not None:
            store.close()
        for path in added:
            with contextlib.suppress(OSError):
                path.unlink()
    print(reproduce("bench.profile_hotspots", sys.argv[1:] if argv is None else argv))
    clear(run_dir)
    drop_corpus(args, articles, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
