"""Docs that cannot fall behind the code: every config key and CLI command is documented."""

from __future__ import annotations

import argparse
import base64
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from feeds.cli import build_parser, main
from feeds.config import Config
from tests.conftest import ROOT

DOCS_DIR = ROOT / "docs"
CONFIG_DOC = (DOCS_DIR / "configuration.md").read_text("utf-8")
README = (ROOT / "README.md").read_text("utf-8")


def config_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= config_keys(candidate)
    return keys


@pytest.mark.parametrize("key", sorted(config_keys(Config)))
def test_every_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in CONFIG_DOC or f"[{key}]" in CONFIG_DOC or f"[[{key}]]" in CONFIG_DOC


def test_every_cli_command_is_in_the_readme() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for command in subparsers.choices:  # type: ignore[union-attr]
        assert re.search(rf"feeds {command}\b", README), command


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:15])
    assert "./scripts/run" in first_screen and "./scripts/test" in first_screen
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text("utf-8")


def test_every_module_is_in_the_architecture_map() -> None:
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text("utf-8")
    for module in sorted((ROOT / "feeds").rglob("*.py")):
        if module.name in ("__init__.py", "__main__.py"):
            continue
        assert module.name in architecture, module.relative_to(ROOT)


# --- what the docs tell a user to type ----------------------------------------------------------

DOCS = {path.name: path.read_text("utf-8") for path in [ROOT / "README.md", *DOCS_DIR.glob("*.md")]}
FENCE = re.compile(r"^ *```([a-z]*)\n(.*?)^ *```", re.M | re.S)


def fenced(language: str) -> list[tuple[str, str]]:
    return [(name, m[2]) for name, text in DOCS.items() for m in FENCE.finditer(text)
            if m[1] == language]  # fmt: skip


def command_lines() -> list[tuple[str, str]]:
    """Every `feeds ...` the docs show as code (fenced or inline), without its # comment."""
    found = []
    for name, text in DOCS.items():
        code = [m[2] for m in FENCE.finditer(text)] + re.findall(
            r"`([^`\n]+)`", FENCE.sub("", text)
        )
        for piece in code:
            for line in re.sub(r"\n +(?=\[)", " ", piece).splitlines():  # continued lines
                line = line.split("#")[0]
                for m in re.finditer(
                    r"(?:^|[ /])(?:feeds|service\.py)( [a-z][a-z-]*(?= |$))?(.*)", line
                ):
                    if "service.py" in m[0]:
                        found.append((name, f"run{m[1] or ''}{m[2]}"))
                    elif m[1]:
                        found.append((name, f"{m[1].strip()}{m[2]}"))
    return found


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


@pytest.mark.parametrize(("doc", "line"), command_lines())
def test_every_documented_command_and_flag_exists(doc: str, line: str) -> None:
    words = line.split()
    parser = subcommand(build_parser(), words)
    assert parser.prog != "feeds", f"{doc}: no command {words[0]!r} in `feeds {line}`"
    if parser.prog == "feeds alerts":
        assert len(words) < 2 or not words[1].isalpha(), f"{doc}: no `feeds {line}`"
    known = {option for action in parser._actions for option in action.option_strings}
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line):
        assert flag in known, f"{doc}: `{parser.prog}` has no {flag} (in `feeds {line}`)"


def test_the_docs_show_commands_at_all() -> None:
    """The extraction above must keep finding what it checks."""
    lines = {line.split()[0] for _, line in command_lines()}
    assert {"build", "run", "alerts", "backup", "check-config", "errors"} <= lines


@pytest.mark.parametrize(("doc", "snippet"), fenced("toml"))
def test_every_toml_snippet_passes_check_config(
    doc: str, snippet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snippet is appended to the shipped config, as the docs say, and must be valid there."""
    for name in re.findall(r'"env:([A-Z_]+)"', snippet):
        monkeypatch.setenv(name, "documented-example")
    shipped = (ROOT / "config" / "feeds.toml").read_text("utf-8")
    config = tmp_path / "config" / "feeds.toml"
    config.parent.mkdir()
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    config.write_text(f"{shipped}\n{snippet}", "utf-8")
    assert main(["check-config", "--config", str(config)]) == 0, doc


def test_the_documented_verifiers_accept_what_feeds_signs() -> None:
    """docs/webhooks.md's receiving-side code, run as printed, against real signed requests."""
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    from feeds.signing import prepare_request

    namespace: dict[str, Any] = {}
    for _, code in fenced("python"):
        exec(code, namespace)  # the three verify_* functions, as a receiver would paste them
    now = datetime.now(UTC)
    message = {"type": "item.new", "data": {"title": "北证50指数创年内新高"}}
    for secret in ("whsec_" + base64.b64encode(b"k" * 32).decode(), "plain-secret"):
        sent = prepare_request("json", "https://x.invalid/", secret, "evt_1", message, now)
        verify = namespace["verify_standard_webhook"]
        assert verify(secret, sent.headers, sent.body)
        assert not verify(secret, sent.headers, sent.body + b" ")
    sent = prepare_request("dingtalk", "https://x.invalid/?access_token=t", "SEC1", "e", {}, now)
    assert namespace["verify_dingtalk"]("SEC1", urlsplit(sent.url).query)
    assert not namespace["verify_dingtalk"]("SEC2", urlsplit(sent.url).query)
    sent = prepare_request("feishu", "https://x.invalid/", "fs", "e", message, now)
    assert namespace["verify_feishu"]("fs", sent.body)
    assert not namespace["verify_feishu"]("other", sent.body)


@pytest.fixture(scope="module")
def examples_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart's output: the shipped config over the bundled examples."""
    out = tmp_path_factory.mktemp("quickstart")
    shipped = str(ROOT / "config" / "feeds.toml")
    argv = ["--config", shipped, "--output", str(out / "output"), "--state", str(out / "s.db")]
    assert main(["build", *argv]) == 0
    return out / "output"


QUICKSTART_URLS = sorted(
    {
        url.replace("…", "http://127.0.0.1:8080")
        for name in ("README.md", "subscribing.md")
        for url in re.findall(r"(?:http://127\.0\.0\.1:8080|…)/[^\s`'\")]*", DOCS[name])
    }
)


@pytest.mark.parametrize("url", QUICKSTART_URLS)
def test_quickstart_feed_urls_exist_and_their_filters_keep_items(
    url: str, examples_built: Path
) -> None:
    """A new user subscribes to what README.md and subscribing.md show, on `./scripts/run`."""
    from urllib.parse import urlsplit

    from feeds.feedfilter import FeedFilter, filter_feed

    parts = urlsplit(url)
    path = parts.path.lstrip("/") or "index.html"
    if path.endswith(".json"):  # the server makes a JSON Feed from the .atom beside it
        path = path.removesuffix(".json") + ".atom"
    artefact = examples_built / path
    assert artefact.is_file(), f"{url}: the quickstart has no {artefact.name}"
    wanted = FeedFilter.from_query(parts.query.encode()) if parts.query else None
    if wanted is not None:
        kept = filter_feed(artefact.read_bytes(), wanted, url)
        assert kept.count(b"<item>") + kept.count(b"<entry>") > 0, f"{url} keeps nothing"


def test_documented_python_commands_use_the_projects_venv() -> None:
    """`./scripts/run` makes .venv and activates nothing: a bare `python service.py` (or a
    bench script) is a system Python without the dependencies (ModuleNotFoundError)."""
    bare = [
        (name, m[0])
        for name, text in DOCS.items()
        for m in re.finditer(r"(?<![/\w])python3? (?:service\.py|bench/|-m (?:feeds|bench))", text)
    ]
    assert not bare, bare


COMMON_FLAGS = {"--help", "--config", "--articles", "--output", "--state", "--log-level"}


def all_commands(parser: argparse.ArgumentParser, words: str = "") -> dict[str, set[str]]:
    """'build' -> its own flags (without the ones every command takes), for every sub-command."""
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= all_commands(sub, f"{words} {name}".strip())
    if words:
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
        found[words] = flags - COMMON_FLAGS
    return found


def test_every_flag_of_every_command_is_documented_with_it() -> None:
    """The reverse of the test above: `feeds items --all` existed, but no doc showed it."""
    shown: dict[str, str] = {}
    for _, line in command_lines():
        for command in all_commands(build_parser()):
            if f"{line} ".startswith(f"{command} "):
                shown[command] = shown.get(command, "") + " " + line
    shown["run"] += shown["build"]  # "feeds run [same flags] …"
    for command, flags in all_commands(build_parser()).items():
        missing = {flag for flag in flags if not re.search(rf"{flag}\b", shown.get(command, ""))}
        assert not missing, f"`feeds {command}`: {sorted(missing)} in no documented command line"
