"""State storage. ``open_store`` is the only way in; SQLite is the embedded default."""

from __future__ import annotations

from pathlib import Path

from feeds.store.sqlite import ErrorRow, FeedState, FileRow, ItemListing, ItemRow, SQLiteStore

Store = SQLiteStore

__all__ = ["ErrorRow", "FeedState", "FileRow", "ItemListing", "ItemRow", "Store", "open_store"]


def open_store(path: Path) -> Store:
    """Open (creating and migrating as needed) the state database at ``path``."""
    return SQLiteStore(path)
