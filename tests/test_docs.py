"""Docs that cannot fall behind the code: every config key and CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

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
