"""Shared helpers of the benchmark scripts: corpora, configs, measured subprocesses, the service.

Peak memory of a process tree is measured two ways while it runs:

* ``largest``: the largest single process (``ru_maxrss`` of ``wait4``, which covers the child
  and every descendant it reaped) — exact;
* ``rss``/``pss``: the sum over the whole tree, sampled from /proc every 20 ms. RSS counts pages
  shared between processes (libraries, fork copies) once per process; PSS splits them, so the
  PSS sum is what the tree really costs the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.gen_corpus import CorpusStats, generate

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_WORKDIR = Path("/tmp/bench")
TOPICS = {"北交所": "beijiaosuo", "专精特新": "zhuanjingtexin", "新三板": "xinsanban"}
# Tree memory is sampled this often. Every sample reads each process's smaps_rollup, which walks
# its page tables under the mmap lock: at 50 Hz that slowed a 10k cold build by 12-15 %.
SAMPLE_SECONDS = 0.25
_PORT_LINE = re.compile(r"serving .* on http://127\.0\.0\.1:(\d+)/")


# --- machine -----------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {load:.2f}, feeds at {revision()}"
    )


def revision() -> str:
    """The commit the benchmarked code is at, ``+changes`` when feeds/ has uncommitted edits."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "feeds"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


def reproduce(module: str, argv: Sequence[str]) -> str:
    """The exact command line, as typed from the project folder."""
    python = Path(PYTHON)
    if python.parent.parent == ROOT / ".venv":
        prefix = [".venv/bin/python"]
    else:  # another interpreter (a profiling venv): it finds feeds through PYTHONPATH
        prefix = ["env", f"PYTHONPATH={ROOT}", str(python)]
    return "reproduce: " + shlex.join([*prefix, "-m", module, *argv])


# --- corpora and configs -----------------------------------------------------------------------


def corpus(
    workdir: Path, n: int, *, seed: int = 1, dup_rate: float = 0.1, topic_rate: float = 0.2
) -> Path:
    """The corpus for these options below ``workdir``, generated once and then reused."""
    root = workdir / f"corpus-n{n}-s{seed}-d{dup_rate:g}-t{topic_rate:g}"
    marker = root / ".complete"  # hidden: feeds never reads it
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    stats: CorpusStats = generate(root, n, seed=seed, dup_rate=dup_rate, topic_rate=topic_rate)
    marker.write_text(f"{stats}\n")
    print(
        f"# corpus: {stats.files} files, {stats.bytes / 1e6:.1f} MB, {stats.duplicates} copies, "
        f"{stats.with_topic} with a topic, generated in {stats.seconds:.1f} s -> {root}",
        flush=True,
    )
    return root


def write_config(
    path: Path,
    articles: Path,
    output: Path,
    state: Path,
    *,
    debounce: float | None = None,
    settle: float | None = None,
    extra: str = "",
) -> Path:
    """A feeds config with the three topics; service timings only when given (else defaults);
    ``extra`` is appended as is (more TOML tables)."""
    topics = "".join(
        f'[[topics]]\nname = "{name}"\nslug = "{slug}"\nkeywords = ["{name}"]\n\n'
        for name, slug in TOPICS.items()
    )
    service = ""
    if debounce is not None or settle is not None:
        service = "[service]\n"
        service += f"debounce_seconds = {debounce}\n" if debounce is not None else ""
        service += f"settle_seconds = {settle}\n" if settle is not None else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'articles = ["{articles}"]\noutput = "{output}"\nstate = "{state}"\n'
        f'base_url = "http://127.0.0.1:8080/"\n\n{service}\n{topics}{extra}',
        "utf-8",
    )
    return path


def add_corpus_arguments(parser: argparse.ArgumentParser, *, keep_help: str) -> None:
    """The options every benchmark on a generated corpus takes: what to generate, and where."""
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--topic-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true", help=keep_help)


def corpus_options(args: argparse.Namespace) -> dict[str, Any]:
    """``add_corpus_arguments``' options as ``corpus``/``write_site`` keyword arguments."""
    return {"seed": args.seed, "dup_rate": args.dup_rate, "topic_rate": args.topic_rate}


def drop_corpus(args: argparse.Namespace, articles: Path, extra: str) -> None:
    """Unless ``--keep``: the corpus and its built archive go (a later run regenerates them)."""
    if not args.keep:
        clear(articles, archive_dir(args.workdir, articles, extra))


def add_dedupe_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-near",
        action="store_true",
        help="config [dedupe] near = false (near-duplicate detection off)",
    )


def config_extra(args: argparse.Namespace) -> str:
    """The extra TOML the common options ask for."""
    return "[dedupe]\nnear = false\n" if getattr(args, "no_near", False) else ""


def archive_dir(workdir: Path, articles: Path, extra: str = "") -> Path:
    """Where the built archive (``state/db`` and ``out``) of a corpus is kept for reuse."""
    return workdir / f"archive-{articles.name}{'-nonear' if 'near = false' in extra else ''}"


def built_archive(workdir: Path, articles: Path, into: Path, extra: str = "") -> float | None:
    """Copy the built archive of ``articles`` into ``into`` (``state/db``, ``out``), building it
    first with ``feeds build`` when there is none; returns the build's seconds, if it ran."""
    cached = archive_dir(workdir, articles, extra)
    seconds = None
    if not (cached / ".complete").exists():
        clear(cached)
        config = write_config(
            cached / "feeds.toml", articles, cached / "out", cached / "state" / "db", extra=extra
        )
        build = check(
            run_measured([PYTHON, "-m", "feeds", "build", "--config", str(config)], cwd=ROOT),
            "feeds build",
        )
        print(f"# archive built in {build.seconds:.1f}s: {build.stdout.strip()}", flush=True)
        (cached / ".complete").write_text("")
        seconds = build.seconds
    clear(into / "state", into / "out")
    into.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cached / "state", into / "state")
    shutil.copytree(cached / "out", into / "out")
    return seconds


def clear(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# --- measured subprocesses ---------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    text = Path(f"/proc/{current}/task/{task}/children").read_text()
                    stack.extend(int(child) for child in text.split())
    return found


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass(slots=True)
class TreeMemory:
    rss_kb: int = 0  # peak of the tree's summed RSS (sampled)
    pss_kb: int = 0  # peak of the tree's summed PSS (sampled)
    processes: int = 0  # most processes seen at once


class TreeSampler:
    """Samples the memory of a process tree in a thread until stopped."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = TreeMemory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.pid)
            rss = sum(_status_kb(pid, "VmRSS:") for pid in pids)
            pss = sum(_pss_kb(pid) for pid in pids)
            peak = self.peak
            peak.rss_kb, peak.pss_kb = max(peak.rss_kb, rss), max(peak.pss_kb, pss)
            peak.processes = max(peak.processes, len(pids))
            self._stop.wait(self.interval)


@dataclass(slots=True)
class Run:
    seconds: float
    returncode: int
    largest_kb: int  # largest single process of the tree (exact)
    tree: TreeMemory
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 3600) -> Run:
    """Run ``cmd`` to completion: wall time, exit code, peak memory, output."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-out.txt"
    err_path = out_path.with_suffix(".err")
    with out_path.open("w+") as out, err_path.open("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        with TreeSampler(proc.pid) as sampler:
            _, status, usage = os.wait4(proc.pid, 0)  # blocks: no polling beside the measured run
        seconds = time.perf_counter() - started
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = Run(seconds, proc.returncode, usage.ru_maxrss, sampler.peak, out.read(), err.read())
    out_path.unlink()
    err_path.unlink()
    return run


def check(run: Run, what: str) -> Run:
    if run.returncode != 0:
        sys.stderr.write(f"{what} failed with exit code {run.returncode}:\n{run.stderr[-4000:]}\n")
        raise SystemExit(1)
    return run


# --- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-share * len(ordered) // 1))))
    return ordered[rank - 1]


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


# --- the real service --------------------------------------------------------------------------


@dataclass
class Service:
    """``python service.py --config … --port 0`` as a child process, its log kept in memory."""

    config: Path
    extra: Sequence[str] = ()
    log: list[str] = field(default_factory=list)
    port: int | None = None
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Service:
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "service.py"), "--config", str(self.config), "--port", "0",
             *self.extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        threading.Thread(target=self._read_log, daemon=True).start()
        return self

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            found = _PORT_LINE.search(line)
            if found:
                self.port = int(found.group(1))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 600) -> float:
        """Serving and caught up with its first scan; returns the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("service exited early:\n" + "\n".join(self.log[-40:]))
            if self.port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    health = httpx.get(self.url("/healthz"), timeout=5).json()
                    if health.get("last_scan") is not None:
                        return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("service not ready:\n" + "\n".join(self.log[-40:]))

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        tree = descendants(self.proc.pid)[1:] if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        for pid in tree:  # a killed service leaves its forkserver and workers behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return code

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: …`` then ``t[0]`` holds the seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


# --- Hugo, the peer ----------------------------------------------------------------------------


def find_hugo(parser: argparse.ArgumentParser, wanted: bool) -> str | None:
    """The hugo executable when ``wanted`` (a usage error if it is not installed)."""
    hugo = shutil.which("hugo")
    if wanted and hugo is None:
        parser.error("--hugo: hugo is not installed (apt-get install -y hugo)")
    return hugo if wanted else None


def hugo_build(hugo: str, site: Path) -> Run:
    """One timed ``hugo`` build of ``site`` from scratch (its public folder and caches cleared)."""
    clear(site / "public", site / "resources")
    cmd = [hugo, "--source", str(site), "--destination", str(site / "public"), "--quiet"]
    return check(run_measured(cmd), "hugo")
