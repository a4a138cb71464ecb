"""Which feeds exist, and turning the dirty ones into files in the output folder.

Every feed is rendered from the store only when marked dirty (or when its files are missing);
``publish`` then writes only when the bytes differ, atomically. The index and OPML are cheap
and rebuilt every time, written only when changed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from feeds.classify import topic_slug
from feeds.config import Config
from feeds.errors import OutputError
from feeds.model import FEED_FORMATS, FeedKey, FeedMeta, Site
from feeds.publish import PublishError, publish_many, remove
from feeds.render import render_atom, render_index, render_opml, render_rss
from feeds.store import FeedState, Store

log = logging.getLogger("feeds.outputs")


@dataclass(slots=True)
class RenderReport:
    written: list[str] = field(default_factory=list)  # relative paths actually (re)written
    rendered: int = 0  # feeds rendered (dirty or missing)
    removed: list[str] = field(default_factory=list)


def site_of(config: Config) -> Site:
    return Site(
        base_url=config.base_url,
        title=config.feed.title,
        description=config.feed.description,
        language=config.language,
        author=config.feed.author,
        hubs=config.websub.hubs,
    )


def feed_metas(config: Config, store: Store) -> list[FeedMeta]:
    """Every feed there is: all, one per source ever seen, one per configured topic; with the
    item counts of their last render (``render_feeds`` refreshes those it renders)."""
    counts = {name: state.count for name, state in store.feed_states().items()}
    title = config.feed.title
    metas = [FeedMeta(FeedKey("all"), title, config.feed.description, counts.get("all", 0))]
    for slug, name in sorted(store.sources().items()):
        key = FeedKey("source", slug)
        metas.append(FeedMeta(key, f"{title} · {name}", f"来源：{name}", counts.get(key.name, 0)))
    for rule in config.topics:
        key = FeedKey("topic", topic_slug(rule))
        description = rule.description or f"主题：{rule.name}"
        metas.append(FeedMeta(key, f"{title} · {rule.name}", description, counts.get(key.name, 0)))
    return metas


def render_feeds(store: Store, config: Config) -> RenderReport:
    """Render dirty feeds, the index and the OPML list; remove feeds that no longer exist.

    Everything is published in one batch, and a feed is marked clean only once its files are."""
    report = RenderReport()
    site = site_of(config)
    metas = feed_metas(config, store)
    states = store.feed_states()
    files: list[tuple[str, bytes]] = []
    rendered: list[tuple[FeedMeta, str]] = []
    for index, meta in enumerate(metas):
        state = states.get(meta.key.name)
        if state is None or state.dirty or _missing(config, meta.key):
            metas[index], digest = _render_one(store, config, site, meta, files)
            rendered.append((metas[index], digest))
    files.append(("index.html", render_index(metas, site, limit=config.feed.limit)))
    files.append(("feeds.opml", render_opml(metas, site)))
    try:
        report.written = publish_many(config.output, files)
        with store.transaction():
            for meta, digest in rendered:
                store.mark_rendered(meta.key.name, digest, meta.count)
        _remove_stale(store, config, {m.key.name for m in metas}, states, report)
    except PublishError as exc:
        raise OutputError(f"cannot write to {config.output}: {exc}") from exc
    report.rendered = len(rendered)
    return report


def warm_caches(store: Store, config: Config) -> None:
    """Decode and serialize every feed's items once and write nothing, so that the first update
    of a feed after a start costs what later ones do (see ``render`` and the store)."""
    site = site_of(config)
    for meta in feed_metas(config, store):
        items = store.feed_items(meta.key, config.feed.limit)
        render_rss(meta, items, site)
        render_atom(meta, items, site)


def _missing(config: Config, key: FeedKey) -> bool:
    return any(not (config.output / f"{key.path_stem}.{fmt}").exists() for fmt in FEED_FORMATS)


def _render_one(
    store: Store, config: Config, site: Site, meta: FeedMeta, files: list[tuple[str, bytes]]
) -> tuple[FeedMeta, str]:
    """The feed's files (appended to ``files``), its meta with the live count, its digest."""
    meta = replace(meta, count=store.feed_count(meta.key))
    items = store.feed_items(meta.key, config.feed.limit)
    digest = hashlib.sha256()
    for fmt, render in (("rss", render_rss), ("atom", render_atom)):
        data = render(meta, items, site)
        digest.update(data)
        files.append((f"{meta.key.path_stem}.{fmt}", data))
    return meta, digest.hexdigest()[:32]


def _remove_stale(
    store: Store,
    config: Config,
    wanted: set[str],
    states: Mapping[str, FeedState],
    report: RenderReport,
) -> None:
    for name in sorted(set(states) - wanted):
        try:
            key = FeedKey.parse(name)
        except ValueError:
            continue
        if key.kind == "source":
            continue  # sources never disappear: readers may be subscribed
        for fmt in FEED_FORMATS:
            relpath = f"{key.path_stem}.{fmt}"
            if remove(config.output, relpath):
                report.removed.append(relpath)
        with store.transaction():
            store.forget_feed(name)
