"""Docs that cannot fall behind the code: every config key and CLI command is documented."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from feeds.cli import build_parser
from feeds.config import Config
from tests.conftest import ROOT

CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text("utf-8")
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
