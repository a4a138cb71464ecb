"""What a valid config cannot say about itself: its references and the world around it.

The schema (``config.py``) checks each value alone. These checks need the whole config or the
machine: a webhook naming a topic that does not exist (it would never fire), a secret read
from an unset environment variable (every alert would fail at delivery), an article folder
that is not there yet, hubs that cannot reach ``base_url``. ``feeds check-config`` prints
them and fails on errors; ``feeds build`` and the service log them and go on.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from feeds.classify import topic_slug
from feeds.config import Config, ConfigError, resolve_secret
from feeds.signing import standard_webhook_key

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.key}: {self.message}"


def check(
    config: Config, environ: Mapping[str, str] | None = None, *, folders: bool = True
) -> list[Finding]:
    """Everything below; ``folders=False`` where the scan reports missing folders itself."""
    environ = os.environ if environ is None else environ
    return [
        *(_article_folders(config) if folders else ()),
        *_topic_slugs(config),
        *_webhook_topics(config),
        *_webhook_secrets(config, environ),
        *_websub_reach(config),
    ]


def log_findings(findings: list[Finding], log: logging.Logger) -> None:
    for finding in findings:
        level = logging.ERROR if finding.severity == "error" else logging.WARNING
        log.log(level, "config %s: %s", finding.key, finding.message)


def _article_folders(config: Config) -> Iterator[Finding]:
    for index, folder in enumerate(config.articles):
        if not folder.exists():
            yield Finding(
                "warning",
                f"articles.{index}",
                f"{folder} does not exist (yet): it is read as soon as it appears",
            )
        elif not folder.is_dir():
            yield Finding("error", f"articles.{index}", f"{folder} is not a folder")


def _topic_slugs(config: Config) -> Iterator[Finding]:
    """Two topics whose names read the same in pinyin (新三板, 新三版) would share one feed."""
    named: dict[str, str] = {}
    for rule in config.topics:
        slug = topic_slug(rule)
        if slug in named:
            yield Finding(
                "error",
                "topics",
                f"{named[slug]!r} and {rule.name!r} both have the slug {slug!r} and would share"
                " one feed; give one of them its own slug",
            )
        else:
            named[slug] = rule.name


def _webhook_topics(config: Config) -> Iterator[Finding]:
    slugs = [topic_slug(rule) for rule in config.topics]
    for webhook in config.webhooks:
        for slug in webhook.topics:
            if slug not in slugs:
                yield Finding(
                    "error",
                    f"webhooks.{webhook.name}.topics",
                    f"{slug!r} is not a configured topic, so it never matches"
                    + _known(slug, slugs),
                )


def _known(slug: str, slugs: list[str]) -> str:
    close = difflib.get_close_matches(slug, slugs, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (topics: {', '.join(slugs)})" if slugs else " (no topics are configured)"


def _webhook_secrets(config: Config, environ: Mapping[str, str]) -> Iterator[Finding]:
    """Values are never quoted: a problem names the variable or the file."""
    for webhook in config.webhooks:
        for field, value in (("url", webhook.url), ("secret", webhook.secret)):
            key = f"webhooks.{webhook.name}.{field}"
            try:
                resolved = resolve_secret(value, environ)
            except ConfigError as exc:
                for problem in exc.problems:
                    yield Finding("error", key, problem)
                continue
            if field == "secret" and webhook.format == "json" and resolved:
                try:
                    standard_webhook_key(resolved)
                except ValueError:
                    yield Finding("error", key, "a whsec_ secret needs base64 after whsec_")


def _websub_reach(config: Config) -> Iterator[Finding]:
    if not config.websub.hubs:
        return
    from feeds.websub import unreachable_from_hubs  # httpx: only when hubs are set

    problem = unreachable_from_hubs(config.base_url)
    if problem:
        yield Finding(
            "warning",
            "websub.hubs",
            f"hubs are set, but {problem}; set base_url to the public URL",
        )
