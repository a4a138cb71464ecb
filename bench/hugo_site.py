"""The same synthetic articles as ``bench.gen_corpus``, laid out as a theme-less Hugo site.

``content/posts/<h|j><index>.md`` keeps each article's body exactly (Hexo HTML with its
boilerplate, Jekyll Markdown with its autolink and navigation links) under YAML front matter
Hugo reads: ``title``, an RFC 3339 ``date``, ``categories = [outlet]`` and ``tags`` = the
topics the text mentions (so Hugo's term feeds stand in for feeds' source and topic feeds).
The layouts are minimal and no article page is rendered (feeds renders none either); Hugo's
embedded RSS template writes RSS for the home page, the ``posts`` section, every category and
every tag, each limited to the newest 50 items as feeds' are.

    .venv/bin/python -m bench.hugo_site --n 10000 /tmp/bench/hugo
    hugo --source /tmp/bench/hugo --destination /tmp/bench/hugo/public --quiet
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.gen_corpus import command_line, render, specs

RSS_LIMIT = 50  # feeds' default [feed] limit

CONFIG = f"""\
baseURL = "http://127.0.0.1:1313/"
languageCode = "zh-CN"
title = "财经新闻"
hasCJKLanguage = true
disableKinds = ["sitemap", "robotsTXT", "404"]

[taxonomies]
category = "categories"
tag = "tags"

[outputs]  # feeds only, as feeds writes (article pages are not rendered, see _index.md)
home = ["RSS"]
section = ["RSS"]
taxonomy = ["RSS"]
term = ["RSS"]

[services.rss]
limit = {RSS_LIMIT}

[markup.goldmark.renderer]
unsafe = true  # the Hexo bodies are raw HTML
"""

# Posts are read, listed and summarized, but no HTML page is written for them.
SECTION_INDEX = "---\ntitle: posts\ncascade:\n  _build:\n    render: never\n    list: always\n---\n"

LAYOUTS = {
    "_default/baseof.html": (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<title>{{ .Title }}</title></head><body>{{ block "main" . }}{{ end }}</body></html>\n'
    ),
    "_default/single.html": '{{ define "main" }}<h1>{{ .Title }}</h1>{{ .Content }}{{ end }}\n',
    "_default/list.html": (
        '{{ define "main" }}<h1>{{ .Title }}</h1><ul>{{ range first 50 .Pages }}'
        '<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul>{{ end }}\n'
    ),
}


def _front_matter(title: str, date: str, categories: list[str], tags: list[str]) -> str:
    lines = [
        "---",
        f"title: {json.dumps(title, ensure_ascii=False)}",
        f"date: {date}",
        f"categories: {json.dumps(categories, ensure_ascii=False)}",
        f"tags: {json.dumps(tags, ensure_ascii=False)}",
        "---",
        "",
    ]
    return "\n".join(lines)


def _body(text: str) -> str:
    """The article's body exactly as in its dialect's file (front matter dropped)."""
    stripped = text.lstrip("\n")
    end = stripped.index("\n---\n", 3)
    return stripped[end + len("\n---\n") :]


def write_site(
    root: Path, n: int, *, seed: int = 1, dup_rate: float = 0.1, topic_rate: float = 0.2
) -> int:
    """Write config, layouts and articles 0..n-1; returns the number of pages written."""
    (root / "content" / "posts").mkdir(parents=True, exist_ok=True)
    (root / "hugo.toml").write_text(CONFIG, "utf-8")
    (root / "content" / "posts" / "_index.md").write_text(SECTION_INDEX, "utf-8")
    for relpath, text in LAYOUTS.items():
        path = root / "layouts" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    pages = 0
    for spec in specs(n, seed=seed, dup_rate=dup_rate, topic_rate=topic_rate):
        name = f"{spec.dialect[0]}{spec.index:07d}.md"
        head = _front_matter(
            spec.story.title,
            spec.published.isoformat().replace("+00:00", "Z"),
            [spec.outlet],
            list(spec.story.topics),
        )
        (root / "content" / "posts" / name).write_text(head + _body(render(spec)), "utf-8")
        pages += 1
    return pages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="Hugo site folder")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--topic-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    pages = write_site(
        args.output, args.n, seed=args.seed, dup_rate=args.dup_rate, topic_rate=args.topic_rate
    )
    print(f"hugo site: {pages} pages -> {args.output}")
    print("reproduce:", command_line("bench.hugo_site", sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
