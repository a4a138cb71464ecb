"""The SQLite store: every SQL statement of the project lives here.

Contract (the same for any later backend): all datetimes are aware UTC, stored as Unix
seconds; writes happen inside ``transaction()`` (one writer); a crash at any point leaves the
database as it was at the last commit (WAL journal). Rows come back as ``feeds.model`` types
or the small row classes below, never as driver rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from feeds.dedupe import is_complete
from feeds.errors import DRAFT_REASON, StoreError
from feeds.model import FeedItem, FeedKey, TopicMatch
from feeds.store.codec import decode_article
from feeds.store.outbox import OutboxMixin

# How many live items each feed has, counted from the rows (what ``feed_sizes`` must hold):
# ``all``, ``source:<slug>`` (items with a file from the outlet), ``topic:<slug>``.
_COUNTED_SIZES = """
    SELECT 'all' AS name, count(*) AS items FROM items WHERE removed_at IS NULL
    UNION ALL
    SELECT 'source:' || f.source_slug, count(DISTINCT f.item_id) FROM files f
    JOIN items i ON i.id = f.item_id WHERE i.removed_at IS NULL GROUP BY f.source_slug
    UNION ALL
    SELECT 'topic:' || t.topic, count(*) FROM item_topics t
    JOIN items i ON i.id = t.item_id WHERE i.removed_at IS NULL GROUP BY t.topic
"""


def _bump(names: str, delta: str) -> str:
    """A statement adding ``delta`` to the size of every feed that the query ``names`` yields."""
    return (
        f"INSERT INTO feed_sizes (name, items) SELECT name, {delta} FROM ({names}) WHERE true "
        "ON CONFLICT (name) DO UPDATE SET items = items + excluded.items;"
    )


def _live(item: str) -> str:
    return f"EXISTS (SELECT 1 FROM items WHERE id = {item} AND removed_at IS NULL)"


def _feeds_of_item(item: str) -> str:
    return (
        f"SELECT 'all' AS name UNION SELECT 'topic:' || topic FROM item_topics "
        f"WHERE item_id = {item} UNION SELECT 'source:' || source_slug FROM files "
        f"WHERE item_id = {item}"
    )


def _outlet_if_sole(row: str, others: str = "") -> str:
    """The outlet feed of a file row's item, if no other file of the item (``others``: a
    further condition on them) is from that outlet."""
    return (
        f"SELECT 'source:' || {row}.source_slug AS name WHERE {_live(f'{row}.item_id')} "
        f"AND NOT EXISTS (SELECT 1 FROM files WHERE item_id = {row}.item_id "
        f"AND source_slug = {row}.source_slug{others})"
    )


def _source_gains(row: str) -> str:
    """The outlet feed that a file row (``NEW``) adds its item to, if it is the first such."""
    return _outlet_if_sole(row, f" AND path <> {row}.path")


def _source_loses(row: str) -> str:
    """The outlet feed that loses the item of a file row (``OLD``) no longer in the table."""
    return _outlet_if_sole(row)


def _topic_of(row: str) -> str:
    return f"SELECT 'topic:' || {row}.topic AS name WHERE {_live(f'{row}.item_id')}"


# Each trigger applies the change of one row to the sizes, so that ``feed_sizes`` always equals
# ``_COUNTED_SIZES`` after every statement (REPLACE would delete rows without firing them).
_FEED_SIZE_TRIGGERS = f"""
    CREATE TRIGGER items_sizes_insert AFTER INSERT ON items WHEN NEW.removed_at IS NULL
    BEGIN {_bump(_feeds_of_item("NEW.id"), "1")} END;
    CREATE TRIGGER items_sizes_update AFTER UPDATE OF removed_at ON items
    WHEN (OLD.removed_at IS NULL) <> (NEW.removed_at IS NULL)
    BEGIN
    {_bump(_feeds_of_item("NEW.id"), "CASE WHEN NEW.removed_at IS NULL THEN 1 ELSE -1 END")}
    END;
    CREATE TRIGGER items_sizes_delete AFTER DELETE ON items WHEN OLD.removed_at IS NULL
    BEGIN {_bump(_feeds_of_item("OLD.id"), "-1")} END;
    CREATE TRIGGER item_topics_sizes_insert AFTER INSERT ON item_topics
    BEGIN {_bump(_topic_of("NEW"), "1")} END;
    CREATE TRIGGER item_topics_sizes_delete AFTER DELETE ON item_topics
    BEGIN {_bump(_topic_of("OLD"), "-1")} END;
    CREATE TRIGGER item_topics_sizes_update AFTER UPDATE ON item_topics
    BEGIN {_bump(_topic_of("OLD"), "-1")} {_bump(_topic_of("NEW"), "1")} END;
    CREATE TRIGGER files_sizes_insert AFTER INSERT ON files
    BEGIN {_bump(_source_gains("NEW"), "1")} END;
    CREATE TRIGGER files_sizes_delete AFTER DELETE ON files
    BEGIN {_bump(_source_loses("OLD"), "-1")} END;
    CREATE TRIGGER files_sizes_update AFTER UPDATE OF item_id, source_slug ON files
    WHEN OLD.item_id IS NOT NEW.item_id OR OLD.source_slug IS NOT NEW.source_slug
    BEGIN {_bump(_source_loses("OLD"), "-1")} {_bump(_source_gains("NEW"), "1")} END;
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        rep_path TEXT,
        fingerprint TEXT NOT NULL,
        published INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        source_slug TEXT NOT NULL,
        title TEXT NOT NULL,
        link TEXT,
        first_seen INTEGER NOT NULL,
        removed_at INTEGER
    );
    CREATE INDEX items_live ON items (published DESC, id) WHERE removed_at IS NULL;
    CREATE TABLE files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        present INTEGER NOT NULL DEFAULT 1,
        item_id TEXT NOT NULL REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED,
        fingerprint TEXT NOT NULL,
        body_key TEXT,
        quality INTEGER NOT NULL,
        source_slug TEXT NOT NULL,
        source_name TEXT NOT NULL,
        published INTEGER NOT NULL,
        article BLOB NOT NULL
    );
    CREATE INDEX files_item ON files (item_id);
    CREATE INDEX files_source ON files (source_slug, published DESC);
    CREATE TABLE fingerprints (fp TEXT PRIMARY KEY, item_id TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE body_keys (key TEXT PRIMARY KEY, item_id TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE item_topics (
        item_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        rule TEXT NOT NULL,
        word TEXT NOT NULL,
        field TEXT NOT NULL,
        PRIMARY KEY (item_id, topic)
    ) WITHOUT ROWID;
    CREATE INDEX item_topics_topic ON item_topics (topic);
    CREATE TABLE sources (slug TEXT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE feeds (
        name TEXT PRIMARY KEY,
        dirty INTEGER NOT NULL DEFAULT 1,
        digest TEXT
    );
    CREATE TABLE file_errors (
        path TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL DEFAULT 1
    );
    """,
    # 2: the webhook alert outbox (feeds.store.outbox)
    """
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        webhook TEXT NOT NULL,
        event_type TEXT NOT NULL,
        item_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        window_start INTEGER NOT NULL,
        next_attempt INTEGER NOT NULL,
        lease_until INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        digest_id TEXT
    );
    CREATE INDEX alert_outbox_queue ON alert_outbox (webhook, id) WHERE status = 'pending';
    CREATE INDEX alert_outbox_status ON alert_outbox (status, id);
    """,
    # 3: near-duplicate index, and each member's similarity to the story it joined
    """
    ALTER TABLE files ADD COLUMN near_score REAL;
    CREATE TABLE near_anchors (
        hash INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        PRIMARY KEY (hash, item_id)
    ) WITHOUT ROWID;
    """,
    # 4: each feed's item count, kept from its last render (the index shows every count)
    """
    ALTER TABLE feeds ADD COLUMN count INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: per-outlet counts without touching the rows (the index shows every feed's count)
    """
    CREATE INDEX files_source_item ON files (source_slug, item_id);
    """,
    # 6: every feed's live item count, kept up to date by triggers in the writing transaction
    # (counting at render time cost ~100 ms per update at 100,000 articles)
    f"""
    CREATE TABLE feed_sizes (name TEXT PRIMARY KEY, items INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO feed_sizes (name, items) {_COUNTED_SIZES};
    {_FEED_SIZE_TRIGGERS}
    """,
    # 7: requests sent to each webhook in the last minute (the per-target rate budget), shared
    # by every process using this database and kept across restarts
    """
    CREATE TABLE alert_requests (webhook TEXT NOT NULL, sent_at REAL NOT NULL);
    CREATE INDEX alert_requests_by_webhook ON alert_requests (webhook, sent_at);
    """,
    # 8: the length of each file's text, so that a flash does not represent the story its full
    # copy tells (NULL: a row written before, measured from its article when next compared)
    """
    ALTER TABLE files ADD COLUMN body_chars INTEGER;
    """,
    # 9: the slug each unconfigured outlet claimed (by its folded name), so that an outlet whose
    # name reads the same in pinyin gets another one instead of sharing its feed
    """
    CREATE TABLE outlet_slugs (outlet TEXT PRIMARY KEY, slug TEXT NOT NULL UNIQUE) WITHOUT ROWID;
    """,
)


def to_ts(moment: datetime) -> int:
    return int(moment.timestamp())


def from_ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    size: int
    mtime_ns: int
    present: bool
    item_id: str
    fingerprint: str
    quality: int
    source_slug: str
    source_name: str
    published: datetime
    near_score: float | None = None  # similarity to the story when it joined as a near-dup
    body_chars: int | None = None  # characters of its canonical text (None: not measured yet)


_FILE_COLUMNS = (
    "path, size, mtime_ns, present, item_id, fingerprint, quality, source_slug, source_name, "
    "published, near_score, body_chars"
)


def _file_row(row: Any) -> FileRow:
    path, size, mtime_ns, present, item_id, fp, quality, slug, name, published, score, chars = row
    return FileRow(
        path, size, mtime_ns, bool(present), item_id, fp, quality, slug, name,
        from_ts(int(published)), score, chars,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: str
    rep_path: str | None
    fingerprint: str
    published: datetime
    updated: datetime
    source_slug: str
    removed: bool
    title: str = ""


@dataclass(frozen=True, slots=True)
class FeedState:
    dirty: bool
    digest: str | None
    count: int  # live items when last rendered


DEFAULT_CHECKPOINT_PAGES = 1000  # SQLite's default: the WAL stays below ~4 MB
WAL_SIZE_LIMIT = 16 * 1024 * 1024
BULK_CHECKPOINT_PAGES = 20_000  # ~80 MB of WAL between checkpoints during ``bulk_writes``
_Sources = tuple[tuple[str, str], ...]
WALK_ADVANTAGE = 4  # a row walked in date order costs about a quarter of a row joined and sorted
DECODED_ITEMS = 1024  # feed items kept decoded: 50 each of 20 feeds


@lru_cache(maxsize=DECODED_ITEMS)
def _feed_item(
    item_id: str, updated: int, published: int, blob: bytes, sources: _Sources
) -> FeedItem:
    """The item decoded from these exact values once, then reused (the renderer keys its
    serialized entries by item, so the same object also makes those lookups cheap)."""
    article = decode_article(blob)
    return FeedItem(
        id=item_id,
        title=article.title,
        link=article.link,
        published=from_ts(published),
        updated=max(from_ts(updated), from_ts(published)),
        source_name=article.source_name,
        source_slug=article.source_slug,
        categories=article.categories,
        content_html=article.content_html,
        summary=article.summary,
        image=article.image,
        language=article.language,
        sources=sources,
        author=article.author,
    )


def _best_of_outlet(files: Sequence[Any]) -> tuple[Any, Any]:
    """(published, path) of an item's best file from one outlet: the best quality (present
    first), then not a flash of a longer copy as good (``dedupe.is_complete``), the newest, the
    first path. Rows: (item, quality, present, chars, published, path)."""
    top = max((quality, present) for _, quality, present, *_ in files)
    tied = [f for f in files if (f[1], f[2]) == top]
    longest = max(f[3] for f in tied)
    _, _, _, _, published, path = min(
        tied, key=lambda f: (not is_complete(f[3], longest), -f[4], f[5])
    )
    return published, path


@dataclass(frozen=True, slots=True)
class ErrorRow:
    path: str
    reason: str
    first_seen: datetime
    last_seen: datetime
    count: int


@dataclass(frozen=True, slots=True)
class ItemListing:
    id: str
    title: str
    link: str | None
    published: datetime
    updated: datetime
    source: str
    topics: tuple[str, ...]
    paths: tuple[str, ...]
    removed: bool


# Per connection, for ``live_file_index``: TEMP triggers journal every path whose row in
# ``files`` or ``file_errors`` changes, inside the transaction that changes it, so a rollback
# undoes the journal entry together with the change. Not INSERT OR IGNORE: an upsert that
# fires a trigger imposes its own conflict policy on the trigger's statements.
_INDEX_JOURNAL = """
CREATE TEMP TABLE IF NOT EXISTS index_changes (path TEXT PRIMARY KEY) WITHOUT ROWID;
""" + "".join(
    f"""
CREATE TEMP TRIGGER IF NOT EXISTS {table}_index_insert AFTER INSERT ON main.{table}
BEGIN INSERT INTO index_changes SELECT new.path
    WHERE NOT EXISTS (SELECT 1 FROM index_changes WHERE path = new.path); END;
CREATE TEMP TRIGGER IF NOT EXISTS {table}_index_delete AFTER DELETE ON main.{table}
BEGIN INSERT INTO index_changes SELECT old.path
    WHERE NOT EXISTS (SELECT 1 FROM index_changes WHERE path = old.path); END;
CREATE TEMP TRIGGER IF NOT EXISTS {table}_index_update
AFTER UPDATE OF {columns} ON main.{table}
BEGIN
    INSERT INTO index_changes SELECT old.path
    WHERE NOT EXISTS (SELECT 1 FROM index_changes WHERE path = old.path);
    INSERT INTO index_changes SELECT new.path
    WHERE NOT EXISTS (SELECT 1 FROM index_changes WHERE path = new.path);
END;
"""
    for table, columns in (
        ("files", "path, size, mtime_ns, present"),
        ("file_errors", "path, size, mtime_ns"),
    )
)


class SQLiteStore(OutboxMixin):
    """One connection, guarded by a lock: one writer, short reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0  # open transaction() levels (savepoints beyond the first)
        self._index: dict[str, tuple[int, int]] | None = None  # see live_file_index
        self._index_version = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:  # a file where a folder must be
            where = next((p for p in path.parents if p.exists()), path.parent)
            raise StoreError(f"cannot open state database {path}: {where} is not a folder") from exc
        except OSError:
            pass  # sqlite3 says what is wrong below
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A WAL grown by a bulk ingest (up to ~80 MB) is cut back to this size at the first
            # write after a checkpoint, not left at its largest until the service stops.
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            # 8 MiB of page cache (default 2 MiB): the anchor and file indexes are updated at
            # random places (a 10,000-article build spent a quarter less time in SQLite with a
            # larger cache); more would take a 100,000-article build over 150 MB.
            self._db.execute("PRAGMA cache_size=-8192")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} has schema {version}, newer than this program")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number};")
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._index = None
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. Nested calls become savepoints of the outer transaction."""
        with self._lock:
            depth = self._depth
            begin, commit, rollback = (
                ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
                if depth == 0
                else (f"SAVEPOINT s{depth}", f"RELEASE s{depth}", f"ROLLBACK TO s{depth}")
            )
            try:
                self._db.execute(begin)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot start a transaction: {exc}") from exc
            self._depth += 1
            try:
                yield
            except sqlite3.Error as exc:
                self._undo(rollback, depth)
                raise StoreError(f"state database error: {exc}") from exc
            except BaseException:
                self._undo(rollback, depth)
                raise
            finally:
                self._depth = depth
            try:
                self._db.execute(commit)
            except sqlite3.Error as exc:
                raise StoreError(f"commit failed: {exc}") from exc

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Many transactions in a row (a first build, a re-read of everything): the WAL is
        folded back into the database every ``BULK_CHECKPOINT_PAGES`` instead of every 1,000.
        Each checkpoint syncs the database file and copies again the pages that every
        transaction changes (index interiors, feed sizes): at 1,000 pages the commits of a
        10,000-article build took 1.3-1.8 s, at 20,000 0.6-0.8 s. Durability is unchanged."""
        with self._lock:
            self._db.execute(f"PRAGMA wal_autocheckpoint={BULK_CHECKPOINT_PAGES}")
        try:
            yield
        finally:
            with self._lock:
                self._db.execute(f"PRAGMA wal_autocheckpoint={DEFAULT_CHECKPOINT_PAGES}")

    def _undo(self, rollback: str, depth: int) -> None:
        self._db.execute(rollback)
        if depth > 0:  # ROLLBACK TO keeps the savepoint open; close it
            self._db.execute(f"RELEASE s{depth}")

    def optimize(self) -> None:
        """Housekeeping: refresh query statistics and fold the WAL back into the database."""
        with self._lock:
            self._db.execute("PRAGMA optimize")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def backup_to(self, dest: Path) -> None:
        """A consistent, compacted copy of the database at ``dest`` (which must not exist),
        taken in one read transaction (other connections keep writing meanwhile), then checked
        with ``PRAGMA integrity_check`` and synced to disk."""
        with self._lock:
            self._db.execute("VACUUM INTO ?", (str(dest),))
        try:
            with closing(sqlite3.connect(dest)) as copy:
                verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            descriptor = os.open(dest, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"the copy {dest} cannot be checked: {exc}") from exc
        if verdict != "ok":
            raise StoreError(f"the copy failed its integrity check: {verdict}")

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # Rows are typed Any: the SQL right above each use says what they hold.
    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _run(self, sql: str, args: Sequence[object] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._run("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- files -----------------------------------------------------------------------------

    def file_index(self) -> dict[str, tuple[int, int]]:
        """``{path: (size, mtime_ns)}`` of every file read before, rejected ones included."""
        rows = self._all(
            "SELECT path, size, mtime_ns FROM files WHERE present = 1 "
            "UNION ALL SELECT path, size, mtime_ns FROM file_errors"
        )
        return {str(p): (int(s), int(m)) for p, s, m in rows}

    def live_file_index(self) -> Mapping[str, tuple[int, int]]:
        """``file_index()`` for a long-running process, kept in memory between calls.

        The first call loads it. Later calls re-read only the paths whose rows this connection
        changed since (journaled in the changing transaction itself, so rolled-back changes
        are never applied), and reload everything when another connection changed the
        database. Inside an open transaction the plain ``file_index()`` is returned.
        """
        with self._lock:
            if self._depth or self._db.in_transaction:
                return self.file_index()
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            if self._index is None or version != self._index_version:
                self._db.executescript(_INDEX_JOURNAL)
                self._db.execute("DELETE FROM temp.index_changes")
                self._index, self._index_version = self.file_index(), version
            else:
                self._apply_index_changes(self._index)
            return dict(self._index)  # a copy: later syncs never change what a caller holds

    def _apply_index_changes(self, index: dict[str, tuple[int, int]]) -> None:
        rows = self._db.execute(
            "SELECT c.path, e.size, e.mtime_ns, f.size, f.mtime_ns FROM temp.index_changes AS c "
            "LEFT JOIN main.file_errors AS e ON e.path = c.path "
            "LEFT JOIN main.files AS f ON f.path = c.path AND f.present = 1"
        ).fetchall()
        for path, error_size, error_mtime, size, mtime in rows:
            if error_size is not None:  # as in file_index: a rejected file's stat wins
                index[str(path)] = (int(error_size), int(error_mtime))
            elif size is not None:
                index[str(path)] = (int(size), int(mtime))
            else:
                index.pop(str(path), None)
        if rows:
            self._db.execute("DELETE FROM temp.index_changes")

    def has_files(self) -> bool:
        """Whether any file row exists (deleted files kept by ``keep_deleted`` included)."""
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM files)")[0])

    def file(self, path: str) -> FileRow | None:
        row = self._one(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?",
            (path,),
        )
        return _file_row(row) if row else None

    def put_file(self, row: FileRow, *, body_key: str | None, article: bytes) -> None:
        # An upsert, not REPLACE: the feed-size triggers must see the row change.
        self._run(
            "INSERT INTO files (path, size, mtime_ns, present, item_id, fingerprint, "
            "body_key, quality, source_slug, source_name, published, article, near_score, "
            "body_chars) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, present = 1, "
            "item_id = excluded.item_id, fingerprint = excluded.fingerprint, "
            "body_key = excluded.body_key, quality = excluded.quality, "
            "source_slug = excluded.source_slug, source_name = excluded.source_name, "
            "published = excluded.published, article = excluded.article, "
            "near_score = excluded.near_score, body_chars = excluded.body_chars",
            (
                row.path,
                row.size,
                row.mtime_ns,
                row.item_id,
                row.fingerprint,
                body_key,
                row.quality,
                row.source_slug,
                row.source_name,
                to_ts(row.published),
                article,
                row.near_score,
                row.body_chars,
            ),
        )

    def set_body_chars(self, path: str, chars: int) -> None:
        """The measured length of a stored file's text (a row written before it was kept)."""
        self._run("UPDATE files SET body_chars = ? WHERE path = ?", (chars, path))

    def save_sources(self, names: Mapping[str, str]) -> None:
        """Outlets by slug, with the display name last seen (every stored file's outlet)."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO sources (slug, name) VALUES (?, ?) "
                "ON CONFLICT (slug) DO UPDATE SET name = excluded.name",
                names.items(),
            )

    def outlet_slug(self, outlet: str) -> str | None:
        """The slug an outlet (its ``classify.outlet_key``) claimed, if any."""
        row = self._one("SELECT slug FROM outlet_slugs WHERE outlet = ?", (outlet,))
        return str(row[0]) if row else None

    def slug_claimant(self, slug: str) -> str | None:
        """The outlet that claimed this slug, if any."""
        row = self._one("SELECT outlet FROM outlet_slugs WHERE slug = ?", (slug,))
        return str(row[0]) if row else None

    def claim_outlet_slug(self, outlet: str, slug: str) -> None:
        """``outlet`` holds ``slug`` from now on (a slug it held before is free again)."""
        self._run(
            "INSERT INTO outlet_slugs (outlet, slug) VALUES (?, ?) "
            "ON CONFLICT (outlet) DO UPDATE SET slug = excluded.slug",
            (outlet, slug),
        )

    def has_outlet_slugs(self) -> bool:
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM outlet_slugs)")[0])

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        self._run(
            "UPDATE files SET size = ?, mtime_ns = ?, present = 1 WHERE path = ?",
            (size, mtime_ns, path),
        )

    def delete_file(self, path: str) -> None:
        self._run("DELETE FROM files WHERE path = ?", (path,))

    def tombstone_file(self, path: str) -> None:
        self._run("UPDATE files SET present = 0 WHERE path = ?", (path,))

    def members(self, item_id: str) -> list[FileRow]:
        rows = self._all(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE item_id = ? ORDER BY path",
            (item_id,),
        )
        return [_file_row(row) for row in rows]

    def paths_under(self, folder: str) -> list[str]:
        """Known file paths below ``folder`` (for a directory deleted or moved away)."""
        prefix = folder.rstrip("/") + "/"
        rows = self._all(
            "SELECT path FROM files WHERE substr(path, 1, ?) = ? "
            "UNION SELECT path FROM file_errors WHERE substr(path, 1, ?) = ?",
            (len(prefix), prefix, len(prefix), prefix),
        )
        return sorted(str(r[0]) for r in rows)

    def file_article(self, path: str) -> bytes | None:
        row = self._one("SELECT article FROM files WHERE path = ?", (path,))
        return bytes(row[0]) if row else None

    # -- items -----------------------------------------------------------------------------

    def item(self, item_id: str) -> ItemRow | None:
        row = self._one(
            "SELECT id, rep_path, fingerprint, published, updated, source_slug, "
            "removed_at IS NOT NULL, title FROM items WHERE id = ?",
            (item_id,),
        )
        if row is None:
            return None
        id_, rep, fp, published, updated, slug, removed, title = row
        return ItemRow(
            str(id_),
            None if rep is None else str(rep),
            str(fp),
            from_ts(int(published)),
            from_ts(int(updated)),
            str(slug),
            bool(removed),
            str(title),
        )

    def save_item(
        self,
        item_id: str,
        *,
        rep_path: str,
        fingerprint: str,
        published: datetime,
        updated: datetime,
        source_slug: str,
        title: str,
        link: str | None,
        first_seen: datetime,
    ) -> None:
        self._run(
            "INSERT INTO items (id, rep_path, fingerprint, published, updated, source_slug, "
            "title, link, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET rep_path = excluded.rep_path, "
            "fingerprint = excluded.fingerprint, published = excluded.published, "
            "updated = excluded.updated, source_slug = excluded.source_slug, "
            "title = excluded.title, link = excluded.link, removed_at = NULL",
            (
                item_id,
                rep_path,
                fingerprint,
                to_ts(published),
                to_ts(updated),
                source_slug,
                title,
                link,
                to_ts(first_seen),
            ),
        )

    def remove_item(self, item_id: str, at: datetime) -> None:
        self._run(
            "UPDATE items SET removed_at = ?, rep_path = NULL WHERE id = ? AND removed_at IS NULL",
            (to_ts(at), item_id),
        )

    def add_anchors(self, item_id: str, hashes: Iterable[int]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO near_anchors (hash, item_id) VALUES (?, ?)",
                [(h, item_id) for h in hashes],
            )

    def items_by_anchors(
        self,
        hashes: Sequence[int],
        strong: Sequence[int],
        window: tuple[datetime, datetime],
        *,
        min_shared: int,
        max_postings: int,
        limit: int,
    ) -> list[str]:
        """Items published within ``window`` that share ``min_shared`` of ``hashes`` or any of
        ``strong``, those sharing most first. Anchors held by more than ``max_postings`` items
        (common phrases) say nothing and are skipped."""
        wanted = (*hashes, *strong)
        if not wanted:
            return []
        values = ",".join(["(?)"] * len(wanted))
        strong_marks = ",".join("?" * len(strong)) or "NULL"
        # One statement: an anchor's postings are counted only up to the cap (LIMIT), so a
        # common phrase held by thousands of stories costs no more than a rare one; only the
        # stories sharing enough are looked up for their date (not every posting: ~12 % less).
        rows = self._all(
            f"WITH wanted(hash) AS (VALUES {values}), "
            "usable(hash) AS (SELECT w.hash FROM wanted w WHERE (SELECT count(*) FROM "
            "(SELECT 1 FROM near_anchors n WHERE n.hash = w.hash LIMIT ?)) <= ?), "
            "shared(item_id, anchors) AS (SELECT a.item_id, count(*) FROM near_anchors a "
            "WHERE a.hash IN (SELECT hash FROM usable) GROUP BY a.item_id "
            f"HAVING count(*) >= ? OR max(a.hash IN ({strong_marks}))) "
            "SELECT s.item_id FROM shared s JOIN items i ON i.id = s.item_id "
            "WHERE i.published BETWEEN ? AND ? ORDER BY s.anchors DESC, s.item_id LIMIT ?",
            (
                *wanted, max_postings + 1, max_postings, min_shared, *strong,
                to_ts(window[0]), to_ts(window[1]), limit,
            ),
        )  # fmt: skip
        return [str(r[0]) for r in rows]

    def item_sources(self, item_id: str) -> tuple[tuple[str, str], ...]:
        """Every (slug, name) among the item's present files."""
        rows = self._all(
            "SELECT DISTINCT source_slug, source_name FROM files "
            "WHERE item_id = ? AND present = 1 ORDER BY source_slug",
            (item_id,),
        )
        return tuple((str(s), str(n)) for s, n in rows)

    def duplicate_groups(self) -> list[tuple[str, list[FileRow]]]:
        """Items with more than one file, with their files (for ``feeds duplicates``)."""
        ids = [
            str(r[0])
            for r in self._all(
                "SELECT f.item_id FROM files f JOIN items i ON i.id = f.item_id "
                "WHERE i.removed_at IS NULL GROUP BY f.item_id HAVING count(*) > 1 "
                "ORDER BY max(i.published) DESC"
            )
        ]
        return [(item_id, self.members(item_id)) for item_id in ids]

    def owner_of_fingerprint(self, fp: str) -> str | None:
        row = self._one("SELECT item_id FROM fingerprints WHERE fp = ?", (fp,))
        return str(row[0]) if row else None

    def owner_of_body_key(self, key: str) -> str | None:
        row = self._one("SELECT item_id FROM body_keys WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def remember_keys(self, item_id: str, fp: str, body_key: str | None) -> None:
        self._run("INSERT OR IGNORE INTO fingerprints (fp, item_id) VALUES (?, ?)", (fp, item_id))
        if body_key:
            self._run(
                "INSERT OR IGNORE INTO body_keys (key, item_id) VALUES (?, ?)", (body_key, item_id)
            )

    def count_items(self) -> int:
        row = self._one("SELECT count(*) FROM items WHERE removed_at IS NULL")
        return int(row[0]) if row else 0

    def prune_removed(self, before: datetime) -> int:
        """Forget items removed before ``before`` (their ids stay reserved via fingerprints)."""
        ids = [
            str(r[0])
            for r in self._all(
                "SELECT id FROM items WHERE removed_at IS NOT NULL AND removed_at < ?",
                (to_ts(before),),
            )
        ]
        for item_id in ids:
            self._run("DELETE FROM item_topics WHERE item_id = ?", (item_id,))
            self._run("DELETE FROM files WHERE item_id = ?", (item_id,))
            self._run("DELETE FROM near_anchors WHERE item_id = ?", (item_id,))
        return self._run(
            "DELETE FROM items WHERE removed_at IS NOT NULL AND removed_at < ?", (to_ts(before),)
        )

    # -- topics ----------------------------------------------------------------------------

    def topics_of(self, item_id: str) -> list[TopicMatch]:
        rows = self._all(
            "SELECT topic, rule, word, field FROM item_topics WHERE item_id = ? ORDER BY topic",
            (item_id,),
        )
        return [TopicMatch(*map(str, row)) for row in rows]

    def set_topics(
        self, item_id: str, matches: Iterable[TopicMatch], *, replace: bool = True
    ) -> None:
        """The item's topics; ``replace=False`` when it has none yet (a new item)."""
        if replace:
            self._run("DELETE FROM item_topics WHERE item_id = ?", (item_id,))
        rows = [(item_id, m.topic, m.rule, m.word, m.field) for m in matches]
        if rows:  # most items have no topic
            with self._lock:
                self._db.executemany(
                    "INSERT INTO item_topics (item_id, topic, rule, word, field) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    # -- feeds -----------------------------------------------------------------------------

    def mark_dirty(self, names: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT INTO feeds (name, dirty) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET dirty = 1",
                [(name,) for name in names],
            )

    def mark_all_dirty(self) -> None:
        self._run("UPDATE feeds SET dirty = 1")

    def feed_states(self) -> dict[str, FeedState]:
        rows = self._all("SELECT name, dirty, digest, count FROM feeds")
        return {
            str(n): FeedState(bool(d), None if g is None else str(g), int(c)) for n, d, g, c in rows
        }

    def mark_rendered(self, name: str, digest: str, count: int) -> None:
        self._run(
            "INSERT INTO feeds (name, dirty, digest, count) VALUES (?, 0, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET dirty = 0, digest = excluded.digest, "
            "count = excluded.count",
            (name, digest, count),
        )

    def forget_feed(self, name: str) -> None:
        self._run("DELETE FROM feeds WHERE name = ?", (name,))

    def sources(self) -> dict[str, str]:
        return {str(s): str(n) for s, n in self._all("SELECT slug, name FROM sources")}

    def feed_count(self, key: FeedKey) -> int:
        """How many live items a feed has in all (the index shows it)."""
        row = self._one("SELECT items FROM feed_sizes WHERE name = ?", (key.name,))
        return int(row[0]) if row else 0

    def counted_feed_sizes(self) -> dict[str, int]:
        """Every feed's live items counted from the rows: what ``feed_count`` keeps (checks)."""
        return {str(name): int(items) for name, items in self._all(_COUNTED_SIZES)}

    def feed_items(self, key: FeedKey, limit: int) -> list[FeedItem]:
        """The newest ``limit`` items of a feed, newest first, ties broken by id."""
        if key.kind == "source":
            picks = self._source_picks(key.slug, limit)
        elif key.kind == "all":
            picks = self._all(
                "SELECT id, updated, published, rep_path FROM items WHERE removed_at IS NULL "
                "ORDER BY published DESC, id LIMIT ?",
                (limit,),
            )
        else:
            picks = self._topic_picks(key, limit)
        return self._feed_items(picks)

    def _topic_picks(self, key: FeedKey, limit: int) -> list[Any]:
        """(item, updated, published, path) of a topic's newest items. A common topic is found
        by walking the newest items until ``limit`` match (about ``limit * all / size`` rows);
        a rare one from its own rows, sorted (``size`` rows). Both give the same rows."""
        size, every = self.feed_count(key), self.feed_count(FeedKey("all"))
        if size * size * WALK_ADVANTAGE >= limit * every:
            return self._all(
                "SELECT i.id, i.updated, i.published, i.rep_path FROM items i "
                "WHERE i.removed_at IS NULL AND EXISTS (SELECT 1 FROM item_topics t "
                "WHERE t.item_id = i.id AND t.topic = ?) ORDER BY i.published DESC, i.id LIMIT ?",
                (key.slug, limit),
            )
        return self._all(
            "SELECT i.id, i.updated, i.published, i.rep_path FROM items i "
            "JOIN item_topics t ON t.item_id = i.id "
            "WHERE t.topic = ? AND i.removed_at IS NULL "
            "ORDER BY i.published DESC, i.id LIMIT ?",
            (key.slug, limit),
        )

    def _source_picks(self, slug: str, limit: int) -> list[Any]:
        """(item, updated, published, path) of the newest items with a file from this outlet;
        an item with several such files shows its best one. Fetches a little more than needed
        and more only when one story has many files here."""
        fetch = limit * 2 + 8
        while True:
            rows = self._all(
                "SELECT i.id, i.updated, f.published, f.path FROM files f "
                "JOIN items i ON i.id = f.item_id WHERE f.source_slug = ? "
                "AND i.removed_at IS NULL "
                "ORDER BY f.published DESC, i.id, f.quality DESC, f.present DESC, f.path LIMIT ?",
                (slug, fetch),
            )
            # Rows come newest first: an item's first row is its pick, and picks keep that order.
            picks: dict[str, Any] = {}
            for row in rows:
                picks.setdefault(row[0], row)
            if len(picks) >= limit or len(rows) < fetch:
                return self._best_members(slug, list(picks.values())[:limit])
            fetch *= 4

    def _best_members(self, slug: str, picks: list[Any]) -> list[Any]:
        """The picked items, each shown by its best file from this outlet — a copy that lost
        its title and date (dated by its mtime: "now") does not stand for the story its
        complete copy tells — newest first."""
        if not picks:
            return picks
        marks = ",".join("?" * len(picks))
        rows: dict[str, list[Any]] = {}
        for row in self._all(
            "SELECT item_id, quality, present, coalesce(body_chars, 0), published, path "
            f"FROM files WHERE source_slug = ? AND item_id IN ({marks})",
            [slug, *(pick[0] for pick in picks)],
        ):
            rows.setdefault(row[0], []).append(row)
        best = {item_id: _best_of_outlet(files) for item_id, files in rows.items()}
        chosen = [
            (item, updated, *best.get(item, (published, path)))
            for item, updated, published, path in picks
        ]
        return sorted(chosen, key=lambda pick: (-pick[2], pick[0]))

    def _feed_items(self, picks: Sequence[Any]) -> list[FeedItem]:
        if not picks:
            return []
        paths = [p[3] for p in picks]
        marks = ",".join("?" * len(picks))
        blobs = dict(self._all(f"SELECT path, article FROM files WHERE path IN ({marks})", paths))
        ids = [p[0] for p in picks]
        sources: dict[str, list[tuple[str, str]]] = {}
        for item_id, slug, name in self._all(
            f"SELECT DISTINCT item_id, source_slug, source_name FROM files "
            f"WHERE item_id IN ({marks}) ORDER BY item_id, source_slug",
            ids,
        ):
            sources.setdefault(str(item_id), []).append((str(slug), str(name)))
        return [
            _feed_item(str(i), u, p, blobs[path], tuple(sources.get(str(i), ())))
            for i, u, p, path in picks
            if path in blobs
        ]

    # -- listings --------------------------------------------------------------------------

    def iter_items(self, include_removed: bool = False) -> Iterator[ItemListing]:
        where = "" if include_removed else "WHERE i.removed_at IS NULL"
        rows = self._all(
            "SELECT i.id, i.title, i.link, i.published, i.updated, i.source_slug, "
            "i.removed_at IS NOT NULL, "
            "(SELECT json_group_array(topic) FROM "
            " (SELECT topic FROM item_topics WHERE item_id = i.id ORDER BY topic)), "
            "(SELECT json_group_array(path) FROM "
            " (SELECT path FROM files WHERE item_id = i.id ORDER BY path)) "
            f"FROM items i {where} ORDER BY i.published DESC, i.id"
        )
        for id_, title, link, published, updated, source, removed, topics, paths in rows:
            yield ItemListing(
                id=str(id_),
                title=str(title),
                link=None if link is None else str(link),
                published=from_ts(int(published)),
                updated=from_ts(int(updated)),
                source=str(source),
                topics=tuple(json.loads(topics)),
                paths=tuple(json.loads(paths)),
                removed=bool(removed),
            )

    # -- freshness (health and metrics) ----------------------------------------------------

    def newest_item_seen(self) -> datetime | None:
        """When the newest live item was first seen (None: there is none)."""
        row = self._one("SELECT max(first_seen) FROM items WHERE removed_at IS NULL")
        return from_ts(int(row[0])) if row and row[0] is not None else None

    def newest_article_by_source(self) -> dict[str, datetime]:
        """Each outlet's newest publication time among present files (walks the index of each
        outlet's files from the newest: a few rows each, not the table)."""
        rows = self._all(
            "SELECT s.slug, (SELECT f.published FROM files f WHERE f.source_slug = s.slug "
            "AND f.present = 1 ORDER BY f.published DESC LIMIT 1) AS newest FROM sources s"
        )
        return {str(slug): from_ts(int(newest)) for slug, newest in rows if newest is not None}

    # -- rejected files --------------------------------------------------------------------

    def record_error(self, path: str, reason: str, size: int, mtime_ns: int, at: datetime) -> bool:
        """Remember a rejected file. True when this is news (new file or a new reason)."""
        before = self._one("SELECT reason FROM file_errors WHERE path = ?", (path,))
        self._run(
            "INSERT INTO file_errors (path, reason, size, mtime_ns, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET reason = excluded.reason, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, last_seen = excluded.last_seen, "
            "count = count + 1",
            (path, reason, size, mtime_ns, to_ts(at), to_ts(at)),
        )
        return before is None or before[0] != reason

    def count_errors(self) -> tuple[int, int]:
        """(files rejected as errors, files that are drafts), as recorded now."""
        row = self._one(
            "SELECT count(*) - count(draft), count(draft) FROM (SELECT "
            "CASE WHEN substr(reason, 1, ?) = ? THEN 1 END AS draft FROM file_errors)",
            (len(DRAFT_REASON), DRAFT_REASON),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def has_errors(self) -> bool:
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM file_errors)")[0])

    def rejected_for(self, reasons: Collection[str]) -> frozenset[str]:
        """Paths of the files rejected for one of ``reasons``."""
        if not reasons:
            return frozenset()
        marks = ",".join("?" * len(reasons))
        rows = self._all(f"SELECT path FROM file_errors WHERE reason IN ({marks})", [*reasons])
        return frozenset(str(row[0]) for row in rows)

    def clear_error(self, path: str) -> None:
        self._run("DELETE FROM file_errors WHERE path = ?", (path,))

    def errors(self) -> list[ErrorRow]:
        rows = self._all(
            "SELECT path, reason, first_seen, last_seen, count FROM file_errors ORDER BY path"
        )
        return [
            ErrorRow(str(p), str(r), from_ts(int(f)), from_ts(int(last)), int(c))
            for p, r, f, last, c in rows
        ]
