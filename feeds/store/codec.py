"""Article <-> compact bytes for storage (zlib-compressed JSON); no SQL here."""

from __future__ import annotations

import json
import zlib
from dataclasses import fields
from datetime import datetime
from typing import Any

from feeds.model import Article

_DATE_FIELDS = ("published", "updated")
_FIELDS = tuple(f.name for f in fields(Article))  # all flat: no recursive asdict needed


def encode_article(article: Article) -> bytes:
    data: dict[str, Any] = {name: getattr(article, name) for name in _FIELDS}
    for name in _DATE_FIELDS:
        value = data[name]
        data[name] = value.isoformat() if value is not None else None
    data["categories"] = list(article.categories)
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(raw.encode("utf-8"), 1)


def decode_article(blob: bytes) -> Article:
    data = json.loads(zlib.decompress(blob))
    for name in _DATE_FIELDS:
        value = data[name]
        data[name] = datetime.fromisoformat(value) if value is not None else None
    data["categories"] = tuple(data["categories"])
    return Article(**data)
