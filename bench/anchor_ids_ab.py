"""A/B: the near-duplicate anchor index keyed by 32-character text item ids vs by integers.

Replays a cold build's anchor traffic (17 anchors inserted and one lookup per article, one
commit per 1,024 articles) into a fresh SQLite file per variant, with the store's pragmas, and
prints the time spent and the file size. Run: .venv/bin/python -m bench.anchor_ids_ab [--n N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path

ANCHORS_PER_ARTICLE = 17
CHUNK = 1024


def replay(folder: Path, kind: str, n: int) -> tuple[float, float, int]:
    """(seconds inserting and committing, seconds looking up, bytes on disk)."""
    path = folder / f"anchors-{kind}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-8192")
    column = "TEXT" if kind == "text" else "INTEGER"
    db.execute(
        f"CREATE TABLE a (hash INTEGER NOT NULL, item {column} NOT NULL, "
        "PRIMARY KEY (hash, item)) WITHOUT ROWID"
    )
    rng = random.Random(1)
    marks = ",".join("?" * ANCHORS_PER_ARTICLE)
    inserting = looking = 0.0
    for start in range(0, n, CHUNK):
        db.execute("BEGIN")
        for number in range(start, min(start + CHUNK, n)):
            item: str | int = (
                hashlib.sha256(str(number).encode()).hexdigest()[:32] if kind == "text" else number
            )
            hashes = [rng.getrandbits(62) for _ in range(ANCHORS_PER_ARTICLE)]
            began = time.perf_counter()
            db.execute(
                f"SELECT item, count(*) FROM a WHERE hash IN ({marks}) GROUP BY item", hashes
            ).fetchall()
            looked = time.perf_counter()
            db.executemany("INSERT OR IGNORE INTO a VALUES (?, ?)", [(h, item) for h in hashes])
            inserting += time.perf_counter() - looked
            looking += looked - began
        began = time.perf_counter()
        db.execute("COMMIT")
        inserting += time.perf_counter() - began
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return inserting, looking, path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000, help="articles to replay")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="anchor-ab-", dir=args.workdir) as folder:
        for kind in ("text", "int"):
            inserting, looking, size = replay(Path(folder), kind, args.n)
            print(
                f"{kind:4} ids: insert+commit {inserting:.2f} s, lookup {looking:.2f} s, "
                f"file {size / 1e6:.1f} MB"
            )
    print(f"reproduce: .venv/bin/python -m bench.anchor_ids_ab --n {args.n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
