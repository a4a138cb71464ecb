"""State storage. ``open_store`` is the only way in; SQLite is the embedded default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feeds.errors import StoreError
from feeds.store.sqlite import ErrorRow, FeedState, FileRow, ItemListing, ItemRow, SQLiteStore

Store = SQLiteStore

__all__ = [
    "ErrorRow", "FeedState", "FileRow", "ItemListing", "ItemRow", "Store", "open_store", "opened",
]  # fmt: skip


def open_store(path: Path) -> Store:
    """Open (creating and migrating as needed) the state database at ``path``."""
    return SQLiteStore(path)


@contextmanager
def opened(path: Path, *, existing: bool) -> Iterator[Store]:
    """The store at ``path``, closed afterwards. ``existing``: refuse to create one (commands
    that only read or act on stored state: an empty new database would answer "nothing",
    when the config, ``--state`` or the working directory point somewhere else)."""
    if existing and not path.is_file():
        raise StoreError(
            f"no state database at {path} (nothing built there yet: check --config, --state, "
            "FEEDS_STATE and the working directory, which a relative or default state path "
            "is resolved against when the config file does not set it)"
        )
    store = open_store(path)
    try:
        yield store
    finally:
        store.close()
