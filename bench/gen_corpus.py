"""Synthetic corpus of Chinese finance articles in the two dialects feeds reads.

Half the articles are Hexo posts (``hexo/source/_posts/金融/<outlet>/<feed>/<title>.md``: a
leading blank line, a ``categories`` list, RFC 2822 ``GMT`` dates, an HTML ``<div>`` body with
Sina-like boilerplate), half Jekyll posts (``jekyll/_posts/YYYY-MM-DD-<id>.md``: ``+0800`` or
zone-less dates, Markdown paragraphs, an ``<http://…>`` autolink and 返回 navigation links).

All text comes from the small vocabulary below. Article ``i`` depends only on ``(seed, i)``, so
``article_spec(i, …)`` can produce one more article for an existing corpus (the incremental
benchmark does) and ``bench.hugo_site`` can lay out exactly the same articles for Hugo.

    .venv/bin/python -m bench.gen_corpus --n 10000 --dup-rate 0.1 --topic-rate 0.2 /tmp/bench/c
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

BEIJING = timezone(timedelta(hours=8))
START = datetime(2021, 6, 1, tzinfo=UTC)
STEP_SECONDS = 157  # mean spacing of publication times (100,000 articles ~ 6 months)

# --- vocabulary (written for this benchmark) ---------------------------------------------------

_NAME_HEAD = ("华信", "东岳", "恒通", "金川", "瑞丰", "宏达", "嘉禾", "中盛", "远航", "天成",
              "新纪", "博远", "润泽", "安泰", "长青", "海润", "明德", "启航")  # fmt: skip
_NAME_TRADE = ("科技", "电子", "材料", "能源", "医药", "制造", "智能", "精工", "环保", "物流")
_NAME_TAIL = ("股份", "集团", "控股", "")
_AGENCIES = ("国家统计局", "人民银行", "证监会", "财政部", "商务部", "发改委", "海关总署")
_METRICS = ("营业收入", "净利润", "出口总额", "社会融资规模增量", "工业增加值", "固定资产投资",
            "成交金额", "研发投入", "经营性现金流", "新增订单")  # fmt: skip
_PERIODS = ("一季度", "上半年", "前三季度", "全年", "1-4月", "5月份", "本周", "今年以来", "前两月")
_CHANGES = ("同比增长", "同比下降", "环比增长", "环比回落", "同比微增")
_SECTORS = ("新能源", "半导体", "消费电子", "医药生物", "银行", "券商", "光伏", "汽车零部件",
            "有色金属", "软件服务")  # fmt: skip
_MOVES = ("午后震荡走高", "早盘集体回调", "尾盘快速拉升", "全天窄幅整理", "高开低走", "探底回升")
_REASONS = ("主要受政策预期提振", "资金获利了结意愿增强", "多家公司业绩预告超出预期",
            "海外市场情绪有所回暖", "上游原材料价格明显回落", "行业库存逐步去化")  # fmt: skip
_ACTIONS = ("加大研发投入", "优化产品结构", "拓展海外市场", "推进数字化转型", "完善公司治理",
            "提升服务实体经济能力", "加快产能建设", "强化风险管理")  # fmt: skip
_GOALS = ("推动高质量发展", "增强核心竞争力", "稳定市场预期", "更好回报投资者", "巩固行业地位")
_TRENDS = ("市场流动性保持合理充裕", "行业景气度持续回升", "资金面总体平稳",
           "外部环境仍有不确定性", "居民消费意愿逐步修复", "制造业投资保持韧性")  # fmt: skip
_OUTLOOKS = ("后续仍需关注政策落地节奏", "中长期配置价值逐步显现", "短期波动或将加大",
             "结构性机会值得持续关注", "全年目标有望顺利完成")  # fmt: skip
_PEOPLE = ("某券商首席经济学家", "一位私募基金经理", "业内分析人士", "公司相关负责人",
           "一位不愿具名的投行人士")  # fmt: skip
_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴")
_GIVEN = ("晓明", "丽华", "建国", "思远", "雨桐", "子涵", "海峰", "静怡", "志强", "佳琪")

# topic name -> sentences that mention it (the feeds topics 北交所 / 专精特新 / 新三板)
TOPIC_SENTENCES: dict[str, tuple[str, ...]] = {
    "北交所": ("{co}拟申请在北交所上市，目前已完成辅导备案。",
               "北交所近日发布业务指引，进一步优化发行上市审核流程。",
               "截至收盘，北交所{n}只股票上涨，成交额合计{amt}亿元。"),
    "专精特新": ("{co}入选国家级专精特新“小巨人”企业名单。",
                 "当地已累计培育专精特新中小企业{n}家，覆盖多个细分领域。"),
    "新三板": ("{co}于新三板创新层挂牌，本次定向发行募资{amt}亿元。",
               "新三板基础层本周新增挂牌公司{n}家，市场活跃度有所提升。"),
}  # fmt: skip

# Hexo outlets: (outlet, feed). 证券时报网 and 中证网 write Beijing time labelled "GMT".
HEXO_OUTLETS = (
    ("新浪财经", "新浪财经－国內"),
    ("证券时报网", "快讯"),
    ("中证网", "资讯"),
    ("财联社", "深度"),
    ("每经网", "分类"),
    ("格隆汇", "主题文章"),
)
GMT_IS_LOCAL = frozenset({"证券时报网", "中证网"})
# Jekyll outlets: (category, tag); the tag names the outlet.
JEKYLL_OUTLETS = (("emnews", "东财滚动新闻"), ("cjyw", "财经要闻"), ("gsxw", "公司新闻"))
QR_IMAGE = "https://n.sinaimg.cn/finance/cece9e13/20200514/343233024.png"


@dataclass(frozen=True, slots=True)
class Story:
    title: str
    paragraphs: tuple[str, ...]
    topics: tuple[str, ...]  # topic names the text mentions


@dataclass(frozen=True, slots=True)
class Spec:
    """Everything about article ``index``: its dialect, story, outlet and time."""

    index: int
    dialect: str  # "hexo" | "jekyll"
    story: Story
    published: datetime  # aware UTC
    outlet: str  # Hexo outlet, or Jekyll tag
    feed: str  # Hexo feed, or Jekyll category
    dup_of: int | None  # the article (other dialect) this one copies exactly
    zoneless: bool  # Jekyll: date written without "+0800"
    editor: str


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 1_000_003 + index)


def _company(rng: random.Random) -> str:
    return rng.choice(_NAME_HEAD) + rng.choice(_NAME_TRADE) + rng.choice(_NAME_TAIL)


def _pct(rng: random.Random) -> str:
    return f"{rng.uniform(0.1, 60):.1f}"


def _sentence(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return (f"{rng.choice(_PERIODS)}，{_company(rng)}{rng.choice(_METRICS)}"
                f"{rng.uniform(1, 900):.2f}亿元，{rng.choice(_CHANGES)}{_pct(rng)}%。")  # fmt: skip
    if kind == 1:
        return (f"{_company(rng)}表示，将继续{rng.choice(_ACTIONS)}，{rng.choice(_GOALS)}，"
                f"并{rng.choice(_ACTIONS)}。")  # fmt: skip
    if kind == 2:
        return f"{rng.choice(_PEOPLE)}认为，{rng.choice(_TRENDS)}，{rng.choice(_OUTLOOKS)}。"
    if kind == 3:
        return (f"据{rng.choice(_AGENCIES)}消息，{rng.choice(_PERIODS)}{rng.choice(_SECTORS)}行业"
                f"{rng.choice(_METRICS)}{rng.choice(_CHANGES)}{_pct(rng)}%，"
                f"{rng.choice(_TRENDS)}。")  # fmt: skip
    if kind == 4:
        count = rng.randrange(3, 60)
        return (f"二级市场上，{rng.choice(_SECTORS)}板块{rng.choice(_MOVES)}，"
                f"{rng.choice(_REASONS)}，{count}只个股涨幅超过{_pct(rng)}%。")  # fmt: skip
    return f"数据显示，{rng.choice(_SECTORS)}领域{rng.choice(_TRENDS)}，{rng.choice(_OUTLOOKS)}。"


def _topic_sentence(rng: random.Random, topic: str) -> str:
    template = rng.choice(TOPIC_SENTENCES[topic])
    amount = f"{rng.uniform(1, 90):.2f}"
    return template.format(co=_company(rng), n=rng.randrange(3, 400), amt=amount)


def make_story(rng: random.Random, index: int, topic_rate: float, text_bytes: int) -> Story:
    """A title unique to ``index`` (it carries a number only this index has) and paragraphs."""
    unique = f"{(index + 1000) / 100:.2f}"
    topics: tuple[str, ...] = ()
    if rng.random() < topic_rate:
        topics = (rng.choice(tuple(TOPIC_SENTENCES)),)
    head = _company(rng)
    kind = rng.randrange(3)
    if topics and rng.random() < 0.5:
        title = f"{head}拟登陆{topics[0]}，募资{unique}亿元" if topics[0] != "专精特新" else (
            f"{head}获评专精特新企业，研发投入{unique}亿元")  # fmt: skip
    elif kind == 0:
        title = (f"{head}{rng.choice(_PERIODS)}{rng.choice(_METRICS)}{unique}亿元 "
                 f"{rng.choice(_CHANGES)}{_pct(rng)}%")  # fmt: skip
    elif kind == 1:
        agency, sector = rng.choice(_AGENCIES), rng.choice(_SECTORS)
        title = f"{agency}：{sector}行业{rng.choice(_METRICS)}达{unique}亿元"
    else:
        title = f"{rng.choice(_SECTORS)}板块{rng.choice(_MOVES)} {head}成交{unique}亿元"
    sentences: list[str] = []
    size = 0
    while size < text_bytes:
        sentence = _sentence(rng)
        sentences.append(sentence)
        size += len(sentence.encode())
    for topic in topics:
        sentences.insert(min(2, len(sentences)), _topic_sentence(rng, topic))
    per = rng.randrange(3, 6)
    paragraphs = tuple("".join(sentences[i : i + per]) for i in range(0, len(sentences), per))
    return Story(title, paragraphs, topics)


def is_dup(index: int, dup_rate: float) -> bool:
    """Exactly ``dup_rate`` of the articles (evenly spread) copy the one before them; since the
    dialects alternate, that copy is in the other dialect. Never two copies in a row."""
    rate = min(max(dup_rate, 0.0), 0.5)
    return index > 0 and int((index + 1) * rate) > int(index * rate)


def article_spec(
    index: int,
    *,
    seed: int = 1,
    dup_rate: float = 0.1,
    topic_rate: float = 0.2,
    hexo_text_bytes: int = 3500,
    jekyll_text_bytes: int = 4900,
) -> Spec:
    """Article ``index`` of the corpus for these options (a pure function of its arguments)."""
    rng = _rng(seed, index)
    dialect = "hexo" if index % 2 == 0 else "jekyll"
    published = START + timedelta(seconds=index * STEP_SECONDS + rng.randrange(STEP_SECONDS))
    dup_of: int | None = None
    if is_dup(index, dup_rate):
        dup_of = index - 1
        story = article_spec(
            dup_of, seed=seed, dup_rate=dup_rate, topic_rate=topic_rate,
            hexo_text_bytes=hexo_text_bytes, jekyll_text_bytes=jekyll_text_bytes,
        ).story  # fmt: skip
        rng.random()  # keep the stream of the rest independent of the branch
    else:
        size = hexo_text_bytes if dialect == "hexo" else jekyll_text_bytes
        story = make_story(rng, index, topic_rate, size)
    if dialect == "hexo":
        outlet, feed = HEXO_OUTLETS[rng.randrange(len(HEXO_OUTLETS))]
    else:
        feed, outlet = JEKYLL_OUTLETS[0 if rng.random() < 0.7 else rng.randrange(1, 3)]
    editor = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
    return Spec(index, dialect, story, published, outlet, feed, dup_of, rng.random() < 0.5, editor)


# --- rendering ---------------------------------------------------------------------------------


def jekyll_id(spec: Spec) -> str:
    local = spec.published.astimezone(BEIJING)
    return f"{local:%Y%m%d}{2_200_000_000 + spec.index}"


def relpath(spec: Spec) -> str:
    """Where the article lives below the corpus root."""
    if spec.dialect == "hexo":
        name = spec.story.title.replace(".", "").replace("/", "_")
        return f"hexo/source/_posts/金融/{spec.outlet}/{spec.feed}/{name}.md"
    local = spec.published.astimezone(BEIJING)
    return f"jekyll/_posts/{local:%Y-%m-%d}-{jekyll_id(spec)}.md"


def _hexo_date(spec: Spec) -> str:
    if spec.outlet in GMT_IS_LOCAL:  # Beijing wall time under a GMT label, as those sites do
        local = spec.published.astimezone(BEIJING).replace(tzinfo=UTC)
        return format_datetime(local, usegmt=True)
    return format_datetime(spec.published, usegmt=True)


def render_hexo(spec: Spec) -> str:
    story = spec.story
    paragraphs = "\n".join(f"<p>\u3000\u3000{p}</p>" for p in story.paragraphs)
    image = f"https://picsum.photos/seed/{spec.index}/400/300"
    return (
        f"\n---\ntitle: '{story.title}'\ncategories: \n - 金融\n - {spec.outlet}\n - {spec.feed}\n"
        f"headimg: '{image}'\nauthor: {spec.outlet}\ncomments: false\n"
        f"date: {_hexo_date(spec)}\nthumbnail: '{image}'\n---\n\n"
        f"<div>   \n{paragraphs}<!-- news_keyword_pub,stock, -->\n\n\n"
        "<!-- 正文下iframe -->\n\n\n<!-- 正文下iframe -->\n\n<!-- 总声明-->\n\n\n<!-- 总声明-->\n\n"
        "<!-- 文末二维码 start -->\n"
        "            <style>\n"
        "            .appendQr_wrap&#123;border:1px solid #E6E6E6;padding:8px;&#125;\n"
        "            .appendQr_normal&#123;float:left;&#125;\n"
        "            .appendQr_normal img&#123;width:74px;&#125;\n"
        "            .appendQr_normal_txt&#123;float:left;font-size:20px;line-height:74px;"
        "padding-left:20px;color:#333;&#125;\n"
        "            </style>\n"
        '            <div class="clearfix appendQr_wrap">\n'
        f'                <div class="appendQr_normal"><img src="{QR_IMAGE}" '
        'referrerpolicy="no-referrer"></div>\n'
        '                <div class="appendQr_normal_txt">'
        "海量资讯、精准解读，尽在新浪财经APP</div>\n"
        "            </div>\n"
        "            <!-- 文末二维码 start -->\n\n"
        "<!-- 编辑姓名及工作代码 -->\n\n"
        f'<p class="article-editor">责任编辑：{spec.editor} </p>\n'
        "<!-- 编辑姓名及工作代码-->\n\n  \n</div>\n            \n"
    )


def render_jekyll(spec: Spec) -> str:
    story = spec.story
    local = spec.published.astimezone(BEIJING)
    date = f"{local:%Y-%m-%d %H:%M:%S}" + ("" if spec.zoneless else " +0800")
    lines = ["---", "layout: post", f'title: "{story.title}"', f"date: {date}"]
    lines += [f"categories: {spec.feed}", f"tags: {spec.outlet}", "---", ""]
    lines += [p + "\n" for p in story.paragraphs]
    lines.append(f"<http://finance.eastmoney.com/a/{jekyll_id(spec)}.html>\n")
    lines += [f"[返回{spec.outlet}](../{spec.feed}/)", "[返回首页](../)"]
    return "\n".join(lines)  # like the scraper's files: no final newline


def render(spec: Spec) -> str:
    return render_hexo(spec) if spec.dialect == "hexo" else render_jekyll(spec)


# --- whole corpora -----------------------------------------------------------------------------


@dataclass(slots=True)
class CorpusStats:
    files: int = 0
    bytes: int = 0
    hexo: int = 0
    jekyll: int = 0
    duplicates: int = 0
    with_topic: int = 0
    seconds: float = 0.0


def specs(
    n: int, *, seed: int = 1, dup_rate: float = 0.1, topic_rate: float = 0.2, start: int = 0
) -> Iterator[Spec]:
    for index in range(start, start + n):
        yield article_spec(index, seed=seed, dup_rate=dup_rate, topic_rate=topic_rate)


def write_article(root: Path, spec: Spec) -> tuple[Path, int]:
    path = root / relpath(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = render(spec).encode("utf-8")
    path.write_bytes(data)
    return path, len(data)


def generate(
    root: Path, n: int, *, seed: int = 1, dup_rate: float = 0.1, topic_rate: float = 0.2
) -> CorpusStats:
    """Write articles 0..n-1 below ``root`` (which should be empty or absent)."""
    started = time.perf_counter()
    stats = CorpusStats()
    for spec in specs(n, seed=seed, dup_rate=dup_rate, topic_rate=topic_rate):
        _, size = write_article(root, spec)
        stats.files += 1
        stats.bytes += size
        stats.hexo += spec.dialect == "hexo"
        stats.jekyll += spec.dialect == "jekyll"
        stats.duplicates += spec.dup_of is not None
        stats.with_topic += bool(spec.story.topics)
    stats.seconds = time.perf_counter() - started
    return stats


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command that reproduces a run, as typed from the project folder."""
    return shlex.join([".venv/bin/python", "-m", module, *argv])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="corpus folder (article root)")
    parser.add_argument("--n", type=int, default=1000, help="number of articles (default 1000)")
    parser.add_argument("--dup-rate", type=float, default=0.1, help="share of exact copies")
    parser.add_argument("--topic-rate", type=float, default=0.2, help="share with a topic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hugo", type=Path, help="also lay the same articles out as a Hugo site")
    args = parser.parse_args(argv)
    if args.output.exists() and any(args.output.iterdir()):
        parser.error(f"{args.output} is not empty")
    opts = {"seed": args.seed, "dup_rate": args.dup_rate, "topic_rate": args.topic_rate}
    stats = generate(args.output, args.n, **opts)
    print(
        f"corpus: {stats.files} files ({stats.hexo} Hexo, {stats.jekyll} Jekyll), "
        f"{stats.bytes / 1e6:.1f} MB, mean {stats.bytes / max(stats.files, 1):.0f} B/file, "
        f"{stats.duplicates} exact cross-dialect copies, {stats.with_topic} with a topic; "
        f"{stats.seconds:.1f} s -> {args.output}"
    )
    if args.hugo is not None:
        from bench.hugo_site import write_site

        pages = write_site(args.hugo, args.n, **opts)
        print(f"hugo site: {pages} pages -> {args.hugo}")
    print("reproduce:", command_line("bench.gen_corpus", sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
