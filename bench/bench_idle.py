"""CPU used by an idle service: utime + stime of its process tree over ``--seconds``.

The service is started on a small built archive, given ``--settle`` seconds to finish its
start-up scan, and then left alone (no file events, no HTTP requests) while its CPU ticks
(/proc/<pid>/stat, every thread, and any child process) and context switches are read at the
start and the end; every thread that ran or woke in the window is listed with its figures.
The service's own periodic jobs still run: its rescan is every 300 s by default, so a window
shorter than that does not include one.

    .venv/bin/python -m bench.bench_idle --seconds 30
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    DEFAULT_WORKDIR,
    Service,
    clear,
    corpus,
    descendants,
    machine,
    reproduce,
    write_config,
)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and its descendants, in clock ticks."""
    total = 0
    for proc in descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = Path(f"/proc/{proc}/stat").read_text()
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of the tree (wake-ups)."""
    total = 0
    for proc in descendants(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{proc}/task"):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{proc}/task/{task}/status").read_text().splitlines():
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                            total += int(line.split()[1])
    return total


def thread_figures(pid: int) -> dict[tuple[int, int], tuple[str, int, int]]:
    """Per thread of the tree: (pid, tid) -> (name, CPU ticks, context switches)."""
    figures: dict[tuple[int, int], tuple[str, int, int]] = {}
    for proc in descendants(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{proc}/task"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    base = f"/proc/{proc}/task/{task}"
                    fields = Path(f"{base}/stat").read_text().rsplit(")", 1)[1].split()
                    switches = sum(
                        int(line.split()[1])
                        for line in Path(f"{base}/status").read_text().splitlines()
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt"))
                    )
                    name = Path(f"{base}/comm").read_text().strip()
                    figures[(proc, int(task))] = (name, int(fields[11]) + int(fields[12]), switches)
    return figures


def thread_report(
    start: dict[tuple[int, int], tuple[str, int, int]],
    end: dict[tuple[int, int], tuple[str, int, int]],
    wall: float,
) -> list[str]:
    """One line per thread that ran or woke during the window, busiest first."""
    rows = []
    for key, (name, ticks, switches) in end.items():
        _, ticks0, switches0 = start.get(key, (name, 0, 0))
        if ticks != ticks0 or switches != switches0:
            rows.append((switches - switches0, ticks - ticks0, key, name))
    return [
        f"  thread {pid}/{tid} {name}: {woke / wall:.2f} wake-ups/s, "
        f"CPU {ticks * 1000 / TICK:.0f}ms"
        for woke, ticks, (pid, tid), name in sorted(rows, reverse=True)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="archive size (default 100)")
    parser.add_argument("--seconds", type=float, default=5, help="idle window (default 5)")
    parser.add_argument("--settle", type=float, default=2, help="seconds before measuring")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true", help="keep the corpus")
    args = parser.parse_args(argv)
    articles = corpus(args.workdir, args.n, seed=args.seed)
    run_dir = args.workdir / f"idle-n{args.n}"
    clear(run_dir)
    config = write_config(
        run_dir / "feeds.toml", articles, run_dir / "out", run_dir / "state" / "db"
    )
    print(f"# machine: {machine()}", flush=True)
    with Service(config) as service:
        ready = service.wait_ready()
        time.sleep(args.settle)
        threads0 = thread_figures(service.pid)
        ticks0, switches0, wall0 = cpu_ticks(service.pid), context_switches(service.pid), (
            time.monotonic())  # fmt: skip
        time.sleep(args.seconds)
        ticks1, switches1 = cpu_ticks(service.pid), context_switches(service.pid)
        wall = time.monotonic() - wall0
        threads1 = thread_figures(service.pid)
        threads = len(os.listdir(f"/proc/{service.pid}/task"))
    cpu = (ticks1 - ticks0) / TICK
    print(f"idle service CPU; {machine()}")
    print(
        f"idle n={args.n} window={wall:.1f}s (ready after {ready:.1f}s): CPU {cpu * 1000:.0f}ms "
        f"= {cpu / wall:.2%} of one core (tick {1000 / TICK:.0f}ms); "
        f"{(switches1 - switches0) / wall:.1f} wake-ups/s over {threads} threads"
    )
    print("\n".join(thread_report(threads0, threads1, wall)) or "  no thread ran or woke")
    print(reproduce("bench.bench_idle", sys.argv[1:] if argv is None else argv))
    clear(run_dir)
    if not args.keep:
        clear(articles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
