"""The one typed, validated configuration object.

``load_config`` reads a TOML file, merges the built-in outlet rules (``feeds/data/outlets.toml``),
applies ``FEEDS_*`` environment overrides and validates everything with pydantic. Paths in the
file are relative to the file's folder. Nothing here imports another ``feeds`` module.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DATA_DIR = Path(__file__).parent / "data"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
Slug = Annotated[str, Field(pattern=SLUG_RE.pattern, max_length=80)]
TopicField = Literal["title", "summary", "content"]


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` lists ``key: message`` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Strict):
    include: tuple[str, ...] = ("*.md", "*.markdown", "*.html", "*.htm", "*.txt")
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    follow_symlinks: bool = True


class FeedConfig(_Strict):
    title: str = "财经新闻"
    description: str = "Chinese finance news, republished"
    limit: int = Field(default=50, gt=0, le=10_000)
    summary_chars: int = Field(default=200, gt=0, le=10_000)
    keep_deleted: bool = False
    author: str = "feeds"


class CleanupRules(_Strict):
    """Boilerplate removal, kept as data. Selectors are CSS; text patterns are regexes matched
    against the stripped text of block elements (a matching block is removed)."""

    remove_selectors: tuple[str, ...] = ()
    remove_text: tuple[str, ...] = ()
    ignore_images: tuple[str, ...] = ()  # substrings of image URLs that are not lead images
    title_suffixes: tuple[str, ...] = ()  # site names cut from a title's end ("标题_新浪网")

    @field_validator("remove_text")
    @classmethod
    def _regexes_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
        return value

    def merged(self, other: CleanupRules) -> CleanupRules:
        return CleanupRules(
            remove_selectors=self.remove_selectors + other.remove_selectors,
            remove_text=self.remove_text + other.remove_text,
            ignore_images=self.ignore_images + other.ignore_images,
            title_suffixes=self.title_suffixes + other.title_suffixes,
        )


class SourceRule(_Strict):
    """An outlet: its display name, aliases that mean the same outlet, and its quirks."""

    name: str = Field(min_length=1)
    slug: Slug | None = None
    aliases: tuple[str, ...] = ()
    gmt_is_local: bool = False  # dates labelled GMT are really local (Beijing) time
    cleanup: CleanupRules = CleanupRules()


class TopicRule(_Strict):
    name: str = Field(min_length=1)
    slug: Slug | None = None
    description: str = ""
    keywords: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    regex: str | None = None
    fields: tuple[TopicField, ...] = ("title", "summary", "content")
    sources: tuple[Slug, ...] = ()

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regex {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _has_a_rule(self) -> TopicRule:
        if not (self.keywords or self.all or self.regex or self.sources):
            raise ValueError("a topic needs keywords, all, regex or sources")
        return self


class DedupeConfig(_Strict):
    """Near-duplicate merging on top of the exact content hash."""

    near: bool = True
    threshold: float = Field(default=0.7, gt=0, le=1)  # containment of the shorter text
    window_hours: float = Field(default=48, gt=0)  # publication times at most this far apart
    max_candidates: int = Field(default=30, gt=0, le=1000)
    max_reissue_share: float = Field(default=0.5, ge=0, le=1)  # identity guard, see docs


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    enabled: bool = True
    max_age: int = Field(default=300, ge=0)


class ServiceConfig(_Strict):
    rescan_seconds: float = Field(default=300, gt=0)
    debounce_seconds: float = Field(default=0.3, ge=0)
    settle_seconds: float = Field(default=0.5, ge=0)
    retention_days: int = Field(default=0, ge=0)  # 0 keeps items forever
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # /healthz turns "degraded" after this long without a new item (0: never)
    quiet_after_hours: float = Field(default=0, ge=0)


class WebSubConfig(_Strict):
    """WebSub (W3C): the hubs every feed names; each is told when a feed changed."""

    hubs: tuple[str, ...] = ()

    @field_validator("hubs")
    @classmethod
    def _hubs_absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for hub in value:
            if not re.match(r"^https?://[^/\s]+\S*$", hub):
                raise ValueError(f"hub {hub!r} must be an absolute http(s) URL")
        if len(set(value)) != len(value):
            raise ValueError("a hub is listed twice")
        return value


WebhookFormat = Literal["json", "wecom", "dingtalk", "feishu", "slack"]
WebhookEvent = Literal["item.new", "item.updated"]


class WebhookConfig(_Strict):
    name: Slug
    url: str = Field(min_length=1)  # or "env:VAR" / "file:PATH"
    format: WebhookFormat = "json"
    secret: str | None = None  # or "env:VAR" / "file:PATH"
    topics: tuple[Slug, ...] = ()
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # any of these in `fields`: no alert (as for topics)
    sources: tuple[Slug, ...] = ()
    events: tuple[WebhookEvent, ...] = ("item.new",)
    fields: tuple[TopicField, ...] = ("title", "summary", "content")
    rate_per_minute: int = Field(default=20, gt=0)
    timeout_seconds: float = Field(default=10, gt=0)
    max_retry_hours: float = Field(default=24, gt=0)

    @model_validator(mode="after")
    def _has_a_filter(self) -> WebhookConfig:
        if not (self.topics or self.keywords):
            raise ValueError("a webhook needs topics or keywords")
        return self


class Config(_Strict):
    articles: tuple[Path, ...] = (Path("articles"),)
    output: Path = Path("output")
    state: Path = Path("state/feeds.db")
    base_url: str = "http://127.0.0.1:8080/"
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    alert_on_backfill: bool = False
    alert_bulk_files: int = Field(default=500, ge=0)  # more new files at once: an import
    input: InputConfig = InputConfig()
    feed: FeedConfig = FeedConfig()
    cleanup: CleanupRules = CleanupRules()
    sources: tuple[SourceRule, ...] = ()
    topics: tuple[TopicRule, ...] = ()
    dedupe: DedupeConfig = DedupeConfig()
    server: ServerConfig = ServerConfig()
    service: ServiceConfig = ServiceConfig()
    webhooks: tuple[WebhookConfig, ...] = ()
    websub: WebSubConfig = WebSubConfig()

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_absolute(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("articles", "output", "state", mode="before")
    @classmethod
    def _no_empty_paths(cls, value: Any) -> Any:
        """``FEEDS_OUTPUT=`` (a variable set to nothing) would be the working directory."""
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            raise ValueError("an empty path, which would mean the working directory: name one")
        return value

    @field_validator("articles")
    @classmethod
    def _some_articles(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        if not value:
            raise ValueError("at least one article folder is needed")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for what, names in (
            ("topics", [t.slug or t.name for t in self.topics]),
            ("webhooks", [w.name for w in self.webhooks]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate names {dupes}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


ENV_PREFIX = "FEEDS_"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FEEDS_OUTPUT=/srv/feeds`` or ``FEEDS_SERVER__PORT=9000`` -> nested dict of strings.

    Only names whose first part is a config key count, so ``FEEDS_HOOK_SECRET`` can hold a
    secret referenced as ``env:FEEDS_HOOK_SECRET``.
    """
    result: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if keys[0] not in Config.model_fields:
            continue
        target = result
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value.split(os.pathsep) if keys == ["articles"] else value
    return result


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), ["file not found"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc


def _merge_builtin_sources(data: dict[str, Any]) -> dict[str, Any]:
    """Built-in outlet rules first; a user source with the same name replaces the built-in one."""
    builtin = _read_toml(DATA_DIR / "outlets.toml")
    user_sources = list(data.get("sources", []))
    user_names = {s.get("name") for s in user_sources if isinstance(s, dict)}
    kept = [s for s in builtin.get("sources", []) if s.get("name") not in user_names]
    merged = dict(data)
    merged["sources"] = kept + user_sources
    cleanup = builtin.get("cleanup", {})
    user_cleanup = data.get("cleanup", {})
    if isinstance(user_cleanup, dict):
        merged["cleanup"] = {
            key: list(cleanup.get(key, [])) + list(user_cleanup.get(key, []))
            for key in CleanupRules.model_fields
        } | {k: v for k, v in user_cleanup.items() if k not in cleanup}
    return merged


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    resolved = dict(data)
    for key in ("output", "state"):
        if key in resolved and isinstance(resolved[key], str):
            resolved[key] = os.path.normpath(base / resolved[key])
    if isinstance(resolved.get("articles"), list):
        resolved["articles"] = [
            os.path.normpath(base / p) if isinstance(p, str) else p for p in resolved["articles"]
        ]
    if isinstance(resolved.get("webhooks"), list):
        resolved["webhooks"] = [_resolve_secret_files(hook, base) for hook in resolved["webhooks"]]
    return resolved


def _resolve_secret_files(webhook: Any, base: Path) -> Any:
    """``file:hook-secret`` is relative to the config file's folder, like every other path."""
    if not isinstance(webhook, dict):
        return webhook
    resolved = dict(webhook)
    for key in ("url", "secret"):
        value = resolved.get(key)
        if isinstance(value, str) and value.startswith("file:"):
            resolved[key] = "file:" + os.path.normpath(base / value[5:])
    return resolved


def _origins(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, str]:
    """Dotted keys set by the environment or the command line, and which one set each: a bad
    value from ``FEEDS_FEED__LIMIT=0`` must not be blamed on the config file."""
    origins: dict[str, str] = {}
    for name in environ:
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if name.startswith(ENV_PREFIX) and keys[0] in Config.model_fields:
            origins[".".join(keys)] = f"from {name}"

    def walk(prefix: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, Mapping):
                walk(f"{prefix}{key}.", value)
            else:
                origins[f"{prefix}{key}"] = "from the command line"

    walk("", overrides)
    return origins


def format_errors(error: ValidationError, origins: Mapping[str, str] | None = None) -> list[str]:
    lines = []
    for problem in error.errors():
        loc = problem["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        origin = next((origins[k] for k in (key, str(loc[0])) if origins and k in origins), None)
        if origin:
            key = f"{key} ({origin})"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_top_level_hint(loc) or _did_you_mean(loc)}")
        elif problem["type"] in ("tuple_type", "list_type") and isinstance(loc[-1], str):
            # pydantic says "Input should be a valid tuple": TOML users write lists.
            value = problem.get("input")
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else "…"
            lines.append(f"{key}: should be a list, e.g. {loc[-1]} = [{shown}]")
        else:
            lines.append(f"{key}: {problem['msg']}")
    return lines


def _top_level_hint(loc: tuple[int | str, ...]) -> str:
    """A top-level key written below a ``[table]`` header (a snippet pasted at the end of the
    file) is read as part of that table: say where it belongs."""
    if len(loc) < 2 or loc[-1] not in Config.model_fields:
        return ""
    return (
        f" here: '{loc[-1]}' is a top-level key; TOML reads every key below a [table] header"
        " as part of that table, so move it above the first one"
    )


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """A typo'd key (`limt`) names the key it most likely meant, among its siblings."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None:
            return ""
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through tuple/list/Optional/Annotated wrappers."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _served_base_url(server: object) -> str | None:
    """The built-in server's own address as the default ``base_url``, so that links in feeds,
    the OPML list and the index work when only ``server.host`` / ``server.port`` (or
    ``--host`` / ``--port``) were changed; None when that address is unknown (port 0, or a
    value validation will refuse)."""
    settings = server if isinstance(server, Mapping) else {}
    host = str(settings.get("host", ServerConfig.model_fields["host"].default)).strip()
    try:
        port = int(settings.get("port", ServerConfig.model_fields["port"].default))
    except (TypeError, ValueError):
        return None
    if not 0 < port <= 65535:
        return None
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"  # listening everywhere includes this machine's loopback
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}/"


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, merge and validate. Precedence: overrides (CLI) > environment > file > defaults."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = _resolve_paths(_read_toml(path), path.resolve().parent)
    data = _merge_builtin_sources(data)
    data = _deep_merge(data, _env_overrides(environ))
    data = _deep_merge(data, overrides or {})
    if "base_url" not in data:
        served = _served_base_url(data.get("server"))
        if served is not None:
            data["base_url"] = served
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_errors(exc, _origins(environ, overrides or {}))) from exc


def resolve_secret(value: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``env:NAME`` reads the environment, ``file:PATH`` a file; anything else is literal."""
    if value is None:
        return None
    environ = os.environ if environ is None else environ
    if value.startswith("env:"):
        name = value[4:]
        if name not in environ:
            raise ConfigError("secret", [f"environment variable {name} is not set"])
        return environ[name]
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("secret", [f"cannot read {value[5:]}: {exc.strerror}"]) from exc
    return value
