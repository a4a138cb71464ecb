"""Hostile files built to cost the ingest the square of their size, each ingested by a real
``feeds build`` within a generous bound.

Each shape below, at a few megabytes (under the default ``input.max_file_bytes`` of 4 MiB),
took from minutes to hours of CPU in one regular expression or in lxml before it was fixed,
while the batch it came in (and with it every other new article) waited. Fixed, each takes a
second or two; the bound only has to tell "seconds" from "hours". The build runs in a child
process so that a regression fails at the bound instead of hanging the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write

pytestmark = pytest.mark.slow

BOUND_SECONDS = 120  # fixed: a few seconds on a loaded machine; before: minutes to hours
SIZE = 3_500_000  # characters of hostile text in each file (ASCII: bytes)
BODY = "<p>北交所今日发布公告，相关安排如下所述，市场反应平稳有序。</p>"


def front(title: str, extra: str = "") -> str:
    return f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n{extra}---\n"


def repeated(unit: str) -> str:
    return unit * (SIZE // len(unit))


# name -> (file name, text, how the item's title starts)
SHAPES: dict[str, tuple[str, str, str]] = {
    # normalize: "<!--.*?-->" searched the rest of the title from every "<!--" in vain
    "unclosed-comments-in-the-title": (
        "comments.md",
        front("注释标题" + repeated("<!--")) + BODY,
        "注释标题",
    ),
    "unclosed-comments-in-the-outlet": (
        "outlet.md",
        front("注释来源", f'author: "{repeated("<!--")}"\n') + BODY,
        "注释来源",
    ),
    # normalize: "//[^\s/]+\S*$" backtracked over every split of a long link with a space
    "long-link-with-a-space": (
        "link.md",
        front("长链接", f'link: "//{repeated("a")} x"\n') + BODY,
        "长链接",
    ),
    # clean: Liquid/Nunjucks tags "{%.*?%}", "{{.*?}}", "{:[^}]*}" never closed on a line
    "unclosed-liquid-tags": ("liquid.md", front("模板标签") + repeated("{%") + "\n", "模板标签"),
    "unclosed-liquid-output": ("output.md", front("模板输出") + repeated("{{") + "\n", "模板输出"),
    "unclosed-kramdown-attributes": (
        "ial.md",
        front("属性列表") + repeated("{:") + "\n",
        "属性列表",
    ),
    # clean: "{% raw %}(.*?){% endraw %}" with no endraw
    "raw-without-endraw": ("raw.md", front("原样块") + repeated("{% raw %}") + "\n", "原样块"),
    # clean: lxml freed the anchors of a dropped navigation paragraph one by one, each time
    # walking the whole paragraph
    "thousands-of-relative-links": ("nav.md", front("相对链接") + repeated("[x](y)\n"), "相对链接"),
    # clean: markup millions of levels deep was built in full, then walked at every level
    "markup-a-million-levels-deep": (
        "deep.html",
        front("极深嵌套") + "<p>" + repeated("<b>") + "深处的文字。",
        "极深嵌套",
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_a_costly_shape_is_ingested_in_seconds(tmp_path: Path, shape: str) -> None:
    name, text, title = SHAPES[shape]
    path = write(tmp_path / "articles" / name, text)
    assert path.stat().st_size < 4 * 1024 * 1024  # under the default max_file_bytes
    state = tmp_path / "state" / "feeds.db"
    common = ["--articles", str(tmp_path / "articles"), "--output", str(tmp_path / "output"),
              "--state", str(state)]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "feeds", "build", "--no-ping", *common],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=BOUND_SECONDS,
    )  # fmt: skip
    listed = subprocess.run(
        [sys.executable, "-m", "feeds", "items", "--json", *common],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(items) == 1 and items[0]["paths"] == [str(path)]
    assert items[0]["title"].startswith(title)
