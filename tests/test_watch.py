"""ArticleWatcher against real inotify events on real files (no mocks)."""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feeds.watch import COMPLETE_QUIET, WORKER_THREAD_NAME, ArticleWatcher, Batch, _limit_hint

EDITOR_LEFTOVERS = ("*.swp", "*~", "*.tmp", "#*#")


def accept(path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in EDITOR_LEFTOVERS):
        return False
    return name.endswith((".md", ".html"))


class Recorder:
    """on_batch that keeps every batch and the size of each changed file when it was reported."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[Batch] = []
        self.sizes: dict[str, list[int]] = {}
        self.calls = 0
        self._fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            self.calls += 1
            if self._fail_first and self.calls == 1:
                raise RuntimeError("downstream hiccup")
            self.batches.append(batch)
            for path in batch.changed:
                self.sizes.setdefault(path, []).append(os.stat(path).st_size)

    def changed(self) -> list[str]:
        with self._lock:
            return [path for batch in self.batches for path in batch.changed]

    def gone(self) -> set[str]:
        with self._lock:
            return {path for batch in self.batches for path in batch.gone}

    def gone_dirs(self) -> set[str]:
        with self._lock:
            return {path for batch in self.batches for path in batch.gone_dirs}


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


WatcherFactory = Callable[..., tuple[ArticleWatcher, Recorder]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    return folder


@pytest.fixture
def make_watcher(root: Path) -> Iterator[WatcherFactory]:
    started: list[ArticleWatcher] = []

    def make(
        roots: list[Path] | None = None,
        recorder: Recorder | None = None,
        *,
        debounce: float = 0.1,
        settle: float = 0.3,
        max_batch: int = 5000,
        complete_quiet: float = 0.05,
        **options: Any,
    ) -> tuple[ArticleWatcher, Recorder]:
        recorder = recorder or Recorder()
        watcher = ArticleWatcher(
            roots or [root], accept, recorder, debounce=debounce, settle=settle,
            max_batch=max_batch, complete_quiet=complete_quiet, **options,
        )  # fmt: skip
        watcher.start()
        started.append(watcher)
        return watcher, recorder

    yield make
    for watcher in started:
        watcher.stop()


def write(path: Path, text: str = "# 标题\n\n正文\n") -> None:
    path.write_text(text, encoding="utf-8")


def test_created_file_arrives_once_with_its_content(
    make_watcher: WatcherFactory, root: Path
) -> None:
    _, recorder = make_watcher()
    article = root / "a.md"
    write(article, "x" * 1000)
    wait_until(lambda: str(article) in recorder.changed())
    time.sleep(0.5)
    assert recorder.changed() == [str(article)]
    assert recorder.sizes[str(article)] == [1000]
    assert recorder.gone() == set()


def test_modified_file_arrives_again(make_watcher: WatcherFactory, root: Path) -> None:
    article = root / "a.md"
    write(article, "old")
    _, recorder = make_watcher()
    with article.open("a", encoding="utf-8") as handle:
        handle.write(" and new")
    wait_until(lambda: str(article) in recorder.changed())
    assert recorder.sizes[str(article)] == [len("old and new")]


def test_deleted_file_is_gone(make_watcher: WatcherFactory, root: Path) -> None:
    article = root / "a.md"
    write(article)
    _, recorder = make_watcher()
    article.unlink()
    wait_until(lambda: str(article) in recorder.gone())
    assert recorder.changed() == []


def test_rename_within_root_reports_source_gone_and_target_changed(
    make_watcher: WatcherFactory, root: Path
) -> None:
    (root / "sub").mkdir()
    source, target = root / "a.md", root / "sub" / "b.md"
    write(source)
    _, recorder = make_watcher()
    source.rename(target)
    wait_until(lambda: str(target) in recorder.changed() and str(source) in recorder.gone())
    assert str(source) not in recorder.changed()


def test_slow_writer_is_emitted_once_complete(make_watcher: WatcherFactory, root: Path) -> None:
    # Pauses between chunks are longer than the debounce: only settling holds the file back.
    _, recorder = make_watcher(debounce=0.05, settle=0.5)
    article = root / "slow.md"
    chunk = b"y" * 4096
    with article.open("wb", buffering=0) as handle:
        for _ in range(6):
            handle.write(chunk)
            time.sleep(0.25)
        assert recorder.changed() == []
    wait_until(lambda: str(article) in recorder.changed())
    time.sleep(0.3)
    assert recorder.sizes[str(article)] == [6 * len(chunk)]


def test_file_vanishing_before_it_settles_is_dropped(
    make_watcher: WatcherFactory, root: Path
) -> None:
    _, recorder = make_watcher(debounce=0.3)
    brief, marker = root / "brief.md", root / "marker.md"
    write(brief)
    brief.unlink()
    write(marker)
    wait_until(lambda: str(marker) in recorder.changed())
    assert str(brief) not in recorder.changed()
    assert str(brief) not in recorder.gone()  # nobody downstream ever saw it


def test_temp_file_renamed_into_place_emits_only_the_final_name(
    make_watcher: WatcherFactory, root: Path
) -> None:
    _, recorder = make_watcher()
    temp, final = root / "x.md.tmp", root / "x.md"
    with temp.open("wb") as handle:
        handle.write(b"z" * 500)
        handle.flush()
        time.sleep(0.2)
        handle.write(b"z" * 500)
    os.replace(temp, final)
    wait_until(lambda: str(final) in recorder.changed())
    time.sleep(0.3)
    assert recorder.changed() == [str(final)]
    assert recorder.gone() == set()
    assert recorder.sizes[str(final)] == [1000]


def test_burst_arrives_complete_without_duplicates_in_bounded_batches(
    make_watcher: WatcherFactory, root: Path
) -> None:
    _, recorder = make_watcher(max_batch=100)
    expected = {str(root / f"{n:03d}.md") for n in range(500)}
    for path in expected:
        write(Path(path), path)
    wait_until(lambda: set(recorder.changed()) >= expected)
    time.sleep(0.3)
    assert sorted(recorder.changed()) == sorted(expected)
    assert all(len(batch.changed) + len(batch.gone) <= 100 for batch in recorder.batches)


def test_trickle_is_not_held_back_by_debounce(make_watcher: WatcherFactory, root: Path) -> None:
    _, recorder = make_watcher(debounce=0.3)
    started = time.monotonic()
    first_batch_at: float | None = None
    for n in range(35):  # a new file every 0.1 s for 3.5 s: never quiet for 0.3 s
        write(root / f"t{n}.md")
        if first_batch_at is None and recorder.changed():
            first_batch_at = time.monotonic() - started
        time.sleep(0.1)
    assert first_batch_at is not None and first_batch_at < 3.0
    wait_until(lambda: len(recorder.changed()) == 35)


def test_directory_moved_in_surfaces_its_files(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "staging" / "batch"
    (staging / "deeper").mkdir(parents=True)
    (staging / ".cache").mkdir()
    expected = set()
    for n in range(10):
        for folder in (staging, staging / "deeper"):
            write(folder / f"{n}.md")
            expected.add(str(root / "batch" / folder.relative_to(staging) / f"{n}.md"))
    write(staging / ".cache" / "hidden-dir.md")
    _, recorder = make_watcher()
    staging.rename(root / "batch")
    wait_until(lambda: set(recorder.changed()) >= {os.path.normpath(p) for p in expected})
    time.sleep(0.3)
    assert sorted(recorder.changed()) == sorted(os.path.normpath(p) for p in expected)


def test_directory_moved_away_is_reported_as_gone_dir(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path
) -> None:
    folder = root / "2024"
    folder.mkdir()
    write(folder / "a.md")
    _, recorder = make_watcher()
    folder.rename(tmp_path / "elsewhere")
    wait_until(lambda: str(folder) in recorder.gone_dirs())
    assert recorder.changed() == []


def test_hidden_and_editor_files_are_ignored(make_watcher: WatcherFactory, root: Path) -> None:
    (root / ".git").mkdir()
    _, recorder = make_watcher()
    for name in (".hidden.md", "a.md.swp", "a.md~", "#a.md#", "a.md.tmp", ".git/inside.md"):
        write(root / name)
    visible = root / "visible.md"
    write(visible)
    wait_until(lambda: str(visible) in recorder.changed())
    time.sleep(0.5)
    assert recorder.changed() == [str(visible)]


def test_failing_on_batch_does_not_stop_later_batches(
    make_watcher: WatcherFactory, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(fail_first=True)
    make_watcher(recorder=recorder)
    write(root / "first.md")
    wait_until(lambda: recorder.calls >= 1)
    write(root / "second.md")
    wait_until(lambda: str(root / "second.md") in recorder.changed())
    assert any(r.name == "feeds.watch" and r.levelno == logging.ERROR for r in caplog.records)


def test_stop_flushes_pending_changes_and_ends_the_worker(
    make_watcher: WatcherFactory, root: Path
) -> None:
    watcher, recorder = make_watcher(debounce=30, complete_quiet=30)
    article = root / "a.md"
    write(article)
    wait_until(lambda: watcher.pending == 1)
    time.sleep(0.3)  # let the close-write event arrive too: stop() flushes only complete files
    assert recorder.changed() == []  # held back by the long debounce
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 2
    assert recorder.changed() == [str(article)]
    assert WORKER_THREAD_NAME not in {thread.name for thread in threading.enumerate()}


def test_missing_root_is_skipped_with_a_warning(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "not-yet"
    _, recorder = make_watcher(roots=[missing, root])
    assert any(str(missing) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    write(root / "a.md")
    wait_until(lambda: str(root / "a.md") in recorder.changed())


def test_symlinked_root_reports_paths_below_the_link(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    _, recorder = make_watcher(roots=[link])
    write(root / "a.md")
    wait_until(lambda: str(link / "a.md") in recorder.changed())


def test_watchdog_overflow_sets_the_flag_until_consumed(make_watcher: WatcherFactory) -> None:
    watcher, _ = make_watcher()
    assert not watcher.overflowed
    # The record watchdog's inotify backend logs when the kernel queue overflows.
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    assert watcher.overflowed
    assert watcher.overflowed  # reading does not reset it
    assert watcher.consume_overflow()
    assert not watcher.overflowed


def test_a_complete_file_is_not_held_back_by_the_full_debounce(
    make_watcher: WatcherFactory, root: Path
) -> None:
    _, recorder = make_watcher(debounce=5)
    started = time.monotonic()
    write(root / "a.md")  # written and closed: complete, nothing to wait for
    wait_until(lambda: recorder.changed() == [str(root / "a.md")])
    assert time.monotonic() - started < 2


def test_complete_files_go_at_once_while_an_open_one_waits_for_its_close(
    make_watcher: WatcherFactory, root: Path
) -> None:
    # The shipped lull with a debounce far beyond the test's patience: only completeness counts.
    _, recorder = make_watcher(debounce=60, settle=60, complete_quiet=COMPLETE_QUIET)
    partial = root / "partial.md"
    with partial.open("w", encoding="utf-8") as handle:
        handle.write("# 半截\n")
        handle.flush()
        write(root / "done.md")
        write(root / ".moved.tmp")
        os.rename(root / ".moved.tmp", root / "moved.md")
        wait_until(
            lambda: {str(root / "done.md"), str(root / "moved.md")} <= set(recorder.changed())
        )
        assert str(partial) not in recorder.changed()
        handle.write("正文\n")
    wait_until(lambda: str(partial) in recorder.changed())
    assert recorder.sizes[str(partial)] == [partial.stat().st_size]


def test_a_file_moved_away_and_written_anew_is_never_gone(
    make_watcher: WatcherFactory, root: Path
) -> None:
    # How some editors save: the old file becomes a backup, then the new one is written.
    article = root / "a.md"
    write(article, "old")
    _, recorder = make_watcher(debounce=5, settle=60, complete_quiet=COMPLETE_QUIET)
    article.rename(root / "a.md~")
    time.sleep(0.2)  # the editor writing; far below the debounce
    write(article, "new text")
    wait_until(lambda: str(article) in recorder.changed())
    assert recorder.gone() == set()
    assert recorder.sizes[str(article)] == [len("new text")]


# -- article roots that appear, vanish or are replaced ---------------------------------------


class RootsBack:
    """on_root_back: the roots the watcher reports watched again, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self._lock:
            self.paths.append(path)


def test_root_missing_at_start_is_watched_once_it_appears(
    make_watcher: WatcherFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feeds.watch")
    late = tmp_path / "late"
    back = RootsBack()
    watcher, recorder = make_watcher(roots=[late], on_root_back=back)
    assert watcher.unwatched_roots == (str(late),)
    late.mkdir()  # its parent is watched: no need to wait for a periodic check
    wait_until(lambda: back.paths == [str(late)], timeout=5)
    assert not watcher.unwatched_roots
    assert any(r.levelno == logging.INFO and str(late) in r.getMessage() for r in caplog.records)
    write(late / "a.md")
    wait_until(lambda: str(late / "a.md") in recorder.changed())


def test_root_removed_and_copied_back_is_watched_again(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path
) -> None:
    write(root / "old.md")
    backup = tmp_path / "backup"
    shutil.copytree(root, backup)
    back = RootsBack()
    watcher, recorder = make_watcher(on_root_back=back)
    shutil.rmtree(root)
    wait_until(lambda: watcher.unwatched_roots == (str(root),))
    shutil.copytree(backup, root)
    wait_until(lambda: back.paths == [str(root)], timeout=5)
    write(root / "new.md")
    wait_until(lambda: str(root / "new.md") in recorder.changed())
    assert not watcher.unwatched_roots


def test_root_replaced_by_a_rename_is_watched_in_its_new_form(
    make_watcher: WatcherFactory, root: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    write(fresh / "kept.md")
    back = RootsBack()
    _, recorder = make_watcher(on_root_back=back)
    root.rename(tmp_path / "old")  # how a scraper swaps in a re-cloned folder
    fresh.rename(root)
    wait_until(lambda: back.paths == [str(root)], timeout=5)
    write(tmp_path / "old" / "stale.md")  # no longer the root: not reported under its name
    write(root / "new.md")
    wait_until(lambda: str(root / "new.md") in recorder.changed())
    time.sleep(0.3)
    assert str(root / "stale.md") not in recorder.changed()


def test_check_roots_finds_a_root_whose_parent_was_missing_too(
    make_watcher: WatcherFactory, tmp_path: Path
) -> None:
    deep = tmp_path / "share" / "articles"  # e.g. below a share mounted after the start
    back = RootsBack()
    watcher, recorder = make_watcher(roots=[deep], on_root_back=back)
    deep.mkdir(parents=True)
    time.sleep(0.3)
    assert back.paths == []  # nothing watched could tell: the periodic check must
    watcher.check_roots()
    wait_until(lambda: back.paths == [str(deep)], timeout=5)
    write(deep / "a.md")
    wait_until(lambda: str(deep / "a.md") in recorder.changed())


def test_check_roots_notices_a_symlinked_root_whose_target_moved_away(
    make_watcher: WatcherFactory, tmp_path: Path
) -> None:
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "linked-articles"
    link.symlink_to(target)
    watcher, recorder = make_watcher(roots=[link])
    target.rename(tmp_path / "real-away")  # the link dangles; its watch follows the old folder
    time.sleep(0.3)
    assert recorder.gone_dirs() == set() and not watcher.unwatched_roots
    watcher.check_roots()
    wait_until(lambda: str(link) in recorder.gone_dirs(), timeout=5)
    assert watcher.unwatched_roots == (str(link),)


# -- files written slowly through one handle ------------------------------------------------


def test_a_file_written_slowly_through_one_handle_waits_for_its_close(
    make_watcher: WatcherFactory, root: Path
) -> None:
    # Pauses between writes far longer than settle: only the close tells it is complete.
    _, recorder = make_watcher(debounce=0.1, settle=0.3)
    article = root / "slow.md"
    with article.open("w", encoding="utf-8") as handle:
        for part in ("---\ntitle: 慢\n", "---\n\n", "第一段\n\n", "第二段\n"):
            handle.write(part)
            handle.flush()
            time.sleep(0.8)
        assert recorder.changed() == []
    wait_until(lambda: str(article) in recorder.changed())
    time.sleep(0.3)
    assert recorder.sizes[str(article)] == [article.stat().st_size]


def test_an_open_file_falls_back_to_the_settle_rule_after_close_wait(
    make_watcher: WatcherFactory, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="feeds.watch")
    _, recorder = make_watcher(debounce=0.1, settle=0.3, close_wait=1.5)
    article = root / "left-open.md"
    with article.open("w", encoding="utf-8") as handle:
        handle.write("# 写完了，但没有关闭\n")
        handle.flush()
        time.sleep(1.2)
        assert recorder.changed() == []  # settled long ago, but a close may still come
        wait_until(lambda: str(article) in recorder.changed(), timeout=3)  # not after 60 s
    assert any(r.levelno == logging.INFO and str(article) in r.getMessage() for r in caplog.records)


# -- folders renamed inside a root --------------------------------------------------------------


def test_folder_renamed_within_the_root_arrives_as_one_batch(
    make_watcher: WatcherFactory, root: Path
) -> None:
    old, new = root / "batchA", root / "batchA-renamed"
    (old / "deeper").mkdir(parents=True)
    for n in range(300):
        write(old / ("deeper" if n % 3 else ".") / f"{n}.md")
    expected = {
        os.path.normpath(p.replace(str(old), str(new), 1)) for p in map(str, old.rglob("*.md"))
    }
    _, recorder = make_watcher(max_batch=100)
    old.rename(new)
    wait_until(lambda: str(old) in recorder.gone_dirs())
    time.sleep(0.5)
    with_dir = [batch for batch in recorder.batches if str(old) in batch.gone_dirs]
    assert len(with_dir) == 1
    # one batch: the old paths are gone in the same breath as the new ones arrive
    assert with_dir[0].changed == frozenset(expected)
    assert sorted(recorder.changed()) == sorted(expected)
    assert recorder.gone() == set()


@pytest.mark.parametrize(
    "code, setting",
    [
        (errno.ENOSPC, "fs.inotify.max_user_watches"),
        (errno.EMFILE, "fs.inotify.max_user_instances"),
    ],
)
def test_a_refused_watch_names_the_kernel_limit_to_raise(code: int, setting: str) -> None:
    """What watchdog raises when inotify runs out (the limits are system-wide, so they are not
    lowered here): the log line must tell the operator which setting to raise."""
    hint = _limit_hint(OSError(code, "inotify watch limit reached"))
    assert setting in hint and "full rescan" in hint
    assert _limit_hint(OSError(errno.EACCES, "Permission denied")) == ""
