"""Smoke runs of every benchmark script at tiny N, so the scripts cannot rot.

Each script runs as the docs say (``python -m bench.<name>``) in its own work folder and must
exit 0, print its figures and the ``reproduce:`` line. The numbers themselves are not checked:
benchmarks are not timed tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gen_corpus import article_spec, generate, relpath
from feeds.parse import parse_file
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_bench(module: str, tmp_path: Path, *args: str, timeout: float = 120) -> str:
    argv = [*args, "--workdir", str(tmp_path / "work")] if module != "bench.gen_corpus" else args
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("reproduce: ") and module in lines[-1], done.stdout
    assert all(a in lines[-1] for a in args if not a.startswith("/")), lines[-1]
    return done.stdout


def test_corpus_is_deterministic_with_exact_duplicate_share(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 40, seed=7, dup_rate=0.1, topic_rate=0.5)
    generate(tmp_path / "b", 40, seed=7, dup_rate=0.1, topic_rate=0.5)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.md"))
    assert len(files) == 40 and first.duplicates == 4
    assert first.hexo == first.jekyll == 20
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    copy = next(i for i in range(40) if article_spec(i, seed=7).dup_of is not None)
    original, duplicate = article_spec(copy - 1, seed=7), article_spec(copy, seed=7)
    assert original.dialect != duplicate.dialect and original.story == duplicate.story
    for index in (copy - 1, copy):
        raw = parse_file(tmp_path / "a" / relpath(article_spec(index, seed=7)), 1 << 20)
        assert raw.meta["title"] == original.story.title
    assert 4000 < first.bytes / first.files < 6000  # ~5 KB articles


def test_gen_corpus_cli(tmp_path: Path) -> None:
    out = run_bench(
        "bench.gen_corpus",
        tmp_path,
        "--n",
        "30",
        str(tmp_path / "c"),
        "--hugo",
        str(tmp_path / "h"),
    )
    assert re.search(r"corpus: 30 files \(15 Hexo, 15 Jekyll\)", out)
    assert len(list((tmp_path / "h" / "content" / "posts").glob("[hj]*.md"))) == 30


def test_bench_cold(tmp_path: Path) -> None:
    out = run_bench("bench.bench_cold", tmp_path, "--n", "30", "--runs", "1")
    assert re.search(r"feeds workers=default +n=30 .*median=[\d.]+s .*tree PSS \d+ MB", out)
    assert re.search(r"parallel speed-up workers=default vs 1: [\d.]+x", out)
    assert "same output bytes for every run and workers setting: yes" in out


def test_bench_cold_hugo_mode(tmp_path: Path) -> None:
    if shutil.which("hugo") is None:
        pytest.skip("hugo is not installed (apt-get install -y hugo): Hugo mode not run")
    out = run_bench(
        "bench.bench_cold", tmp_path, "--n", "30", "--runs", "1", "--workers", "1", "--hugo"
    )
    assert re.search(r"^hugo +n=30 .*median=[\d.]+s", out, re.M)
    assert re.search(r"ratio feeds\(workers=1\)/hugo: [\d.]+", out)


def test_bench_floor(tmp_path: Path) -> None:
    out = run_bench("bench.bench_floor", tmp_path, "--n", "30", "--runs", "1")
    assert "# run 1 floor: " in out and "30 articles" in out, out
    assert re.search(r"^floor work alone: [\d.]+ ms CPU per article", out, re.M), out
    assert re.search(r"^without sanitizing: [\d.]+ ms CPU per article", out, re.M), out
    assert "hugo" not in out.split("# machine")[1]


def test_bench_floor_hugo_mode(tmp_path: Path) -> None:
    if shutil.which("hugo") is None:
        pytest.skip("hugo is not installed (apt-get install -y hugo): Hugo mode not run")
    out = run_bench("bench.bench_floor", tmp_path, "--n", "30", "--runs", "1", "--hugo")
    assert re.search(r"^# run 1 hugo: [\d.]+s", out, re.M), out
    assert re.search(r"^ratio floor/hugo: [\d.]+", out, re.M), out


def test_bench_memory(tmp_path: Path) -> None:
    out = run_bench("bench.bench_memory", tmp_path, "--sizes", "20,30")
    assert re.search(r"n=30 +median=[\d.]+s .*tree PSS \d+ MB", out)
    assert re.search(r"growth 20 -> 30: .*time/N ratio [\d.]+", out)


def test_bench_incremental(tmp_path: Path) -> None:
    out = run_bench(
        "bench.bench_incremental", tmp_path, "--n", "30", "--repeats", "1", "--gap", "0.1"
    )
    for config in ("default", "fast"):
        assert re.search(
            rf"config={config} +n=30 .*rewritten on disk p50=\d+ms p95=\d+ms; "
            r"served p50=\d+ms p95=\d+ms",
            out,
        ), out
    assert not list((tmp_path / "work").glob("corpus-*"))  # cleaned up


def test_bench_rescan(tmp_path: Path) -> None:
    out = run_bench("bench.bench_rescan", tmp_path, "--n", "30", "--runs", "2")
    assert re.search(r"rescan n=30 runs=2 median=\d+ms .*walk\+stat\+compare median \d+ms", out)


def test_bench_idle(tmp_path: Path) -> None:
    out = run_bench("bench.bench_idle", tmp_path, "--n", "30", "--seconds", "1", "--settle", "0.5")
    assert re.search(r"idle n=30 window=[\d.]+s .*CPU \d+ms = [\d.]+% of one core", out)


@pytest.mark.parametrize("scenario", ["cold", "update"])
def test_profile_hotspots(tmp_path: Path, scenario: str) -> None:
    out = run_bench(
        "bench.profile_hotspots", tmp_path, "--scenario", scenario, "--n", "30",
        "--repeats", "2", "--profiler", "cprofile", "--top", "5",
    )  # fmt: skip
    assert re.search(r"stages \(wall time, total [\d.]+s\):", out)
    assert "render_feeds" in out and re.search(r"top 5 by self time", out)


def test_bench_prepare(tmp_path: Path) -> None:
    out = run_bench("bench.bench_prepare", tmp_path, "--n", "20", "--runs", "2")
    for stage in ("parse_file", "clean_body", "identity", "anchors", "encode_article"):
        assert re.search(rf"^{stage} +[\d.]+  [\d.]+ [\d.]+$", out, re.M), out
    assert re.search(r"^prepare\(\) whole +[\d.]+", out, re.M)


def test_anchor_ids_ab(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    out = run_bench("bench.anchor_ids_ab", tmp_path, "--n", "50")
    assert re.search(r"^text ids: insert\+commit [\d.]+ s", out, re.M), out
    assert re.search(r"^int  ids: insert\+commit [\d.]+ s", out, re.M), out
