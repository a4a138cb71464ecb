"""The command line as a user runs it: exit codes, summaries, JSON listings."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from feeds.cli import main
from feeds.config import load_config, resolve_secret
from tests.conftest import ROOT, hexo_post, jekyll_post, write

STORY = [
    "北交所今日发布新规，进一步优化发行上市审核流程，提高审核效率与透明度，支持创新型中小企业。"
]


def args_for(tmp_path: Path) -> list[str]:
    return [
        "--config", str(ROOT / "config" / "feeds.toml"),
        "--articles", str(tmp_path / "articles"),
        "--output", str(tmp_path / "out"),
        "--state", str(tmp_path / "state.db"),
    ]  # fmt: skip


def test_build_prints_a_summary_and_lists_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    write(tmp_path / "articles" / "bad.md", "---\ntitle: [\n---\nx")
    assert main(["build", *args_for(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "items new 1" in out and "files rejected 1" in out and "feeds written" in out
    assert f"rejected: {tmp_path / 'articles' / 'bad.md'}: bad YAML front matter" in err
    assert main(["build", *args_for(tmp_path)]) == 0  # nothing changed: bad.md is not re-read
    out = capsys.readouterr().out
    assert "files rejected 0 (1 in all: feeds errors)" in out  # a rerun does not look clean


def test_items_json_has_the_documented_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    write(tmp_path / "articles" / "2024-05-14-1.md", jekyll_post("北交所发布新规", STORY))
    main(["build", *args_for(tmp_path)])
    capsys.readouterr()
    assert main(["items", "--json", *args_for(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    item = json.loads(line)
    assert set(item) >= {"id", "title", "link", "published", "source", "topics", "paths"}
    assert item["published"].endswith("+00:00")
    assert item["topics"] == ["beijiaosuo"]
    assert len(item["paths"]) == 2
    assert item["link"].startswith("http://finance.eastmoney.com/")


def test_errors_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "articles" / "empty.md", "")
    main(["build", *args_for(tmp_path)])
    capsys.readouterr()
    assert main(["errors", "--json", *args_for(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["reason"] == "empty file"


def test_bad_config_exits_nonzero_naming_each_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        tmp_path / "bad.toml",
        'base_url = "not a url"\ntimezone = "Mars/Olympus"\n[feed]\nlimit = 0\n'
        '[[topics]]\nname = "空"\n[server]\nprot = 1\n',
    )
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    for key in ("base_url", "timezone", "feed.limit", "topics.0", "server.prot"):
        assert key in err


def test_unknown_keys_name_the_key_they_most_likely_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        tmp_path / "typos.toml",
        '[feed]\nlimt = 20\n[[topics]]\nname = "北交所"\n'
        '[[topics]]\nname = "新三板"\nkeywrds = ["新三板"]\n'
        "[servr]\nport = 1\n[service]\nzzz = 1\n",
    )
    assert main(["check-config", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "  feed.limt: unknown key (did you mean 'limit'?)" in lines
    assert "  topics.1.keywrds: unknown key (did you mean 'keywords'?)" in lines
    assert "  servr: unknown key (did you mean 'server'?)" in lines
    assert "  service.zzz: unknown key" in lines  # nothing close: no guess


def test_check_config_fails_on_what_would_silently_never_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    config = write(
        tmp_path / "refs.toml",
        'articles = ["not-yet", "a-file"]\n'
        '[[topics]]\nname = "北交所"\nslug = "beijiaosuo"\nkeywords = ["北交所"]\n'
        '[[webhooks]]\nname = "desk"\nurl = "env:FEEDS_TEST_UNSET_HOOK"\n'
        'secret = "file:missing-secret"\ntopics = ["beijiaosou", "xinsanban"]\n',
    )
    assert main(["check-config", "--config", str(config)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("5 error(s): 2 article folder(s)")
    assert lines[1:] == [
        f"warning: articles.0: {tmp_path / 'not-yet'} does not exist (yet): it is read as soon"
        " as it appears",
        f"error: articles.1: {tmp_path / 'a-file'} is not a folder",
        "error: webhooks.desk.topics: 'beijiaosou' is not a configured topic, so it never"
        " matches (did you mean 'beijiaosuo'?)",
        "error: webhooks.desk.topics: 'xinsanban' is not a configured topic, so it never"
        " matches (topics: beijiaosuo)",
        "error: webhooks.desk.url: environment variable FEEDS_TEST_UNSET_HOOK is not set",
        f"error: webhooks.desk.secret: cannot read {tmp_path / 'missing-secret'}: No such file"
        " or directory",
    ]


def test_check_config_fails_on_topics_whose_slugs_collide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "articles").mkdir()
    config = write(
        tmp_path / "topics.toml",
        'articles = ["articles"]\n[[topics]]\nname = "新三板"\nkeywords = ["新三板"]\n'
        '[[topics]]\nname = "新三版"\nkeywords = ["新三版"]\n',
    )
    assert main(["check-config", "--config", str(config)]) == 2
    assert capsys.readouterr().out.splitlines()[1:] == [
        "error: topics: '新三板' and '新三版' both have the slug 'xinsanban' and would share one"
        " feed; give one of them its own slug"
    ]


def test_a_relative_secret_file_is_read_beside_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "articles").mkdir()
    (tmp_path / "hook-secret").write_text("s3cret\n")
    config = write(
        tmp_path / "hook.toml",
        'articles = ["articles"]\n[[webhooks]]\nname = "desk"\nurl = "http://127.0.0.1:9/"\n'
        'secret = "file:hook-secret"\nkeywords = ["北交所"]\n',
    )
    assert Path.cwd() != tmp_path
    assert main(["check-config", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 article folder(s)")
    (hook,) = load_config(config).webhooks
    assert resolve_secret(hook.secret) == "s3cret"


def test_build_logs_config_references_that_cannot_work_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    config = write(
        tmp_path / "hook.toml",
        '[[topics]]\nname = "北交所"\nkeywords = ["北交所"]\n'
        '[[webhooks]]\nname = "desk"\nurl = "http://127.0.0.1:9/"\ntopics = ["nope"]\n',
    )
    args = args_for(tmp_path)[2:]  # this config, the test's own folders
    assert main(["build", "--config", str(config), *args]) == 0
    out, err = capsys.readouterr()
    assert "items new 1" in out
    assert "config webhooks.desk.topics: 'nope' is not a configured topic" in err


def test_missing_and_broken_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    broken = write(tmp_path / "broken.toml", "articles = [")
    assert main(["build", "--config", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_shipped_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "config" / "feeds.toml")]) == 0
    assert "3 topics" in capsys.readouterr().out


def test_unwritable_output_exits_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = write(tmp_path / "file-not-dir", "x")
    args = args_for(tmp_path)
    args[args.index("--output") + 1] = str(blocker / "out")
    assert main(["build", *args]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable" in err[0]


def test_environment_overrides_config(tmp_path: Path) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    env = dict(os.environ, FEEDS_OUTPUT=str(tmp_path / "env-out"), FEEDS_FEED__LIMIT="7")
    args = [a for a in args_for(tmp_path)]
    del args[4:6]  # drop --output so the environment decides
    result = subprocess.run(
        [sys.executable, "-m", "feeds", "build", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env-out" / "all.rss").exists()


def test_readme_quickstart_config_builds_the_bundled_examples(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "feeds", "build", "--config", str(ROOT / "config" / "feeds.toml"),
         "--output", str(tmp_path / "out"), "--state", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "files rejected 1" in result.stdout  # the deliberately broken example
    assert (tmp_path / "out" / "topics" / "beijiaosuo.atom").exists()


def test_unrelated_feeds_variables_are_not_config(tmp_path: Path) -> None:
    from feeds.config import load_config

    env = {"FEEDS_HOOK_SECRET": "s3cret", "FEEDS_SERVER__PORT": "9001", "FEEDS_CONFIG": "x"}
    config = load_config(None, environ=env)
    assert config.server.port == 9001


def item_records(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["items", "--json", "--all", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_backup_is_a_consistent_copy_taken_beside_a_writer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    write(tmp_path / "articles" / "b.md", jekyll_post("新三板挂牌", ["新三板今日新增挂牌公司。"]))
    assert main(["build", *args_for(tmp_path)]) == 0
    original = item_records(args_for(tmp_path), capsys)
    assert len(original) == 2

    writer = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a batch
    writer.execute("UPDATE items SET title = 'uncommitted'")
    try:
        assert main(["backup", *args_for(tmp_path), str(tmp_path / "copy.db")]) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert "integrity ok" in capsys.readouterr().out
    restored = [*args_for(tmp_path)[:-1], str(tmp_path / "copy.db")]  # --state copy.db
    assert item_records(restored, capsys) == original
    assert not list(tmp_path.glob(".copy.db.*"))  # no temporary file left


def test_backup_refuses_to_overwrite_or_to_copy_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "copy.db"
    assert main(["backup", *args_for(tmp_path), str(dest)]) == 4  # no state yet
    assert "no state database at" in capsys.readouterr().err
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    assert main(["build", *args_for(tmp_path)]) == 0
    dest.write_bytes(b"precious")
    assert main(["backup", *args_for(tmp_path), str(dest)]) == 1
    assert "exists (--force replaces it)" in capsys.readouterr().err
    assert dest.read_bytes() == b"precious"
    assert main(["backup", *args_for(tmp_path), "--force", str(dest)]) == 0
    assert dest.read_bytes().startswith(b"SQLite format 3\x00")
    nowhere = tmp_path / "backups" / "feeds.db"
    assert main(["backup", *args_for(tmp_path), str(nowhere)]) == 1
    assert capsys.readouterr().err == (
        f"feeds: cannot write {nowhere}: there is no folder {nowhere.parent} (create it first)\n"
    )


@pytest.mark.parametrize(
    "command", [["items"], ["errors"], ["duplicates"], ["alerts", "list"], ["alerts", "deliver"]]
)
def test_commands_reading_the_state_refuse_one_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A wrong working directory or --state must not answer "nothing" from a new, empty file."""
    assert main([*command, *args_for(tmp_path)]) == 4
    assert f"no state database at {tmp_path / 'state.db'}" in capsys.readouterr().err
    assert not (tmp_path / "state.db").exists()


def test_a_closed_pipe_ends_a_listing_quietly(tmp_path: Path) -> None:
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    assert main(["build", *args_for(tmp_path)]) == 0
    listing = subprocess.Popen(
        [sys.executable, "-m", "feeds", "items", *args_for(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # like `| head` that has had enough before the first line
    assert listing.wait(timeout=60) == 0
    errors = listing.stderr.read()
    assert b"Traceback" not in errors and b"BrokenPipeError" not in errors, errors


@pytest.mark.parametrize(
    ("server", "base"),
    [
        ("port = 9123", "http://127.0.0.1:9123/"),
        ('host = "0.0.0.0"\nport = 9124', "http://127.0.0.1:9124/"),
        ('host = "::1"\nport = 9125', "http://[::1]:9125/"),
        ("port = 0", "http://127.0.0.1:8080/"),  # a free port: not known before it is taken
    ],
)
def test_without_a_base_url_feeds_link_to_the_configured_server(
    tmp_path: Path, server: str, base: str
) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text(f'articles = ["articles"]\noutput = "out"\n[server]\n{server}\n', "utf-8")
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    assert main(["build", "--config", str(config), "--state", str(tmp_path / "s.db")]) == 0
    assert f'href="{base}all.rss"' in (tmp_path / "out" / "index.html").read_text("utf-8")
    assert f'xmlUrl="{base}all.rss"' in (tmp_path / "out" / "feeds.opml").read_text("utf-8")


def test_the_shipped_config_links_to_the_port_given_on_the_command_line() -> None:
    """`./scripts/run`'s config run with `--port 9000`: the index and OPML must not name 8080."""
    from feeds.cli import build_parser, config_from

    shipped = str(ROOT / "config" / "feeds.toml")
    args = build_parser().parse_args(["run", "--config", shipped, "--port", "9000"])
    assert config_from(args).base_url == "http://127.0.0.1:9000/"
    plain = build_parser().parse_args(["build", "--config", shipped])
    assert config_from(plain).base_url == "http://127.0.0.1:8080/"


def test_log_level_is_taken_after_the_sub_command_too(tmp_path: Path) -> None:
    """configuration.md names `--log-level` beside `--log-format`: `feeds build --log-level
    ERROR` and `python service.py --log-level DEBUG` (= `feeds run ...`) must take it."""
    import logging

    from feeds.cli import build_parser

    write(tmp_path / "articles" / "bad.md", "---\ntitle: [\n---\nx")
    root = logging.getLogger()
    level = root.level
    try:
        assert main(["build", *args_for(tmp_path), "--log-level", "ERROR"]) == 0
        assert root.level == logging.ERROR
    finally:
        root.setLevel(level)  # later tests' caplog must still see warnings
    parser = build_parser()
    assert parser.parse_args(["run", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "WARNING", "run"]).log_level == "WARNING"
    assert parser.parse_args(["alerts", "deliver", "--log-level", "INFO"]).log_level == "INFO"
    assert parser.parse_args(["items"]).log_level is None


def test_version_and_help_state_the_exit_codes_the_readme_documents() -> None:
    from feeds import __version__
    from feeds.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OUTPUT, EXIT_STORE

    version = subprocess.run(
        [sys.executable, "-m", "feeds", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout) == (0, f"feeds {__version__}\n")
    helped = subprocess.run(
        [sys.executable, "-m", "feeds", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0
    assert "exit codes" in helped.stdout and "Command line:" not in helped.stdout
    readme = (ROOT / "README.md").read_text("utf-8")
    codes = {EXIT_FAILED: "failed", EXIT_CONFIG: "config", EXIT_OUTPUT: "output folder"}
    for code, words in (codes | {EXIT_STORE: "state database"}).items():
        assert re.search(rf"\n  {code}  [^\n]*{words}", helped.stdout), code
        assert re.search(rf"\b{code} [^;]*{words}", readme), code


@pytest.mark.parametrize(
    "command", ["build", "check-config", "run", "backup", "alerts test", "alerts deliver"]
)
def test_each_command_help_says_how_it_exits(command: str) -> None:
    from feeds.cli import build_parser

    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(io.StringIO()) as out:
        build_parser().parse_args([*command.split(), "--help"])
    assert done.value.code == 0
    assert "Exit " in out.getvalue(), out.getvalue()


def test_check_config_names_the_file_it_read_or_warns_that_there_was_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run outside the project folder, `feeds check-config` used to answer a bare "ok" about
    the built-in defaults: a new user could not tell that no config file was read at all."""
    monkeypatch.delenv("FEEDS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["check-config"]) == 0  # warnings only
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("; config (none: built-in defaults)")
    assert lines[1].startswith(f"warning: no config file: config/feeds.toml is not in {tmp_path}")
    shipped = ROOT / "config" / "feeds.toml"
    assert main(["check-config", "--config", str(shipped)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(f"; config {shipped}") and "no config file" not in out
    write(tmp_path / "articles" / "a.md", hexo_post("北交所发布新规", STORY))
    assert main(["build", "--state", str(tmp_path / "s.db")]) == 0
    assert "no config file: config/feeds.toml is not in" in capsys.readouterr().err


def test_a_top_level_key_below_a_table_says_where_it_belongs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snippet pasted at the end of the file puts its top-level keys into the last table."""
    config = write(
        tmp_path / "pasted.toml",
        '[[topics]]\nname = "北交所"\nkeywords = ["北交所"]\nalert_bulk_files = 100\n',
    )
    assert main(["check-config", "--config", str(config)]) == 2
    (problem,) = capsys.readouterr().err.splitlines()[1:]
    assert problem.startswith("  topics.0.alert_bulk_files: unknown key here: 'alert_bulk_files'")
    assert "move it above the first one" in problem


def test_a_string_where_a_list_belongs_shows_the_list_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pydantic said "Input should be a valid tuple": TOML has lists, not tuples."""
    config = write(
        tmp_path / "lists.toml",
        'articles = "/srv/articles"\n[[topics]]\nname = "北交所"\nkeywords = "北交所"\n',
    )
    assert main(["check-config", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        '  articles: should be a list, e.g. articles = ["/srv/articles"]',
        '  topics.0.keywords: should be a list, e.g. keywords = ["北交所"]',
    ]


def test_a_file_where_the_state_folder_belongs_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to read "[Errno 17] File exists: '…'", which says neither what nor where."""
    blocker = write(tmp_path / "state", "x")
    args = args_for(tmp_path)
    args[args.index("--state") + 1] = str(blocker / "sub" / "feeds.db")
    assert main(["build", *args]) == 4
    assert capsys.readouterr().err == (
        f"feeds: cannot open state database {blocker / 'sub' / 'feeds.db'}: {blocker} is not a"
        " folder\n"
    )


def test_a_bad_value_from_the_environment_is_not_blamed_on_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = str(ROOT / "config" / "feeds.toml")
    monkeypatch.setenv("FEEDS_FEED__LIMIT", "0")
    assert main(["check-config", "--config", shipped]) == 2
    assert "  feed.limit (from FEEDS_FEED__LIMIT): Input should be greater than 0" in (
        capsys.readouterr().err.splitlines()
    )
    monkeypatch.delenv("FEEDS_FEED__LIMIT")
    assert main(["run", "--config", shipped, "--port", "99999"]) == 2
    assert "  server.port (from the command line): Input should be less than or equal to 65535" in (
        capsys.readouterr().err.splitlines()
    )


@pytest.mark.parametrize(
    ("variable", "value"), [("FEEDS_OUTPUT", ""), ("FEEDS_STATE", " "), ("FEEDS_ARTICLES", "/a:")]
)
def test_a_path_variable_set_to_nothing_is_refused_not_the_working_directory(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    """`FEEDS_OUTPUT=${OUT}` with OUT unset used to write the feeds into the working directory
    (and FEEDS_ARTICLES= read it, README and all, as articles)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    assert main(["check-config", "--config", str(ROOT / "config" / "feeds.toml")]) == 2
    key = variable.removeprefix("FEEDS_").lower()
    assert f"  {key} (from {variable}): Value error, an empty path" in capsys.readouterr().err


def test_an_empty_path_flag_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where `--output ""` used to write the feeds
    with pytest.raises(SystemExit) as done:
        main(["build", *args_for(tmp_path), "--output", ""])
    assert done.value.code == 2
    assert "argument --output: an empty path" in capsys.readouterr().err
    assert not (tmp_path / "all.rss").exists()


def test_run_help_names_the_config_keys_its_defaults_come_from() -> None:
    """`--port PORT  HTTP port (default 8080)` was wrong whenever the config set server.port."""
    from feeds.cli import build_parser

    with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:
        build_parser().parse_args(["run", "--help"])
    text = out.getvalue()
    for words in ("server.host", "server.port", "service.log_format", "$FEEDS_CONFIG"):
        assert words in text, words
