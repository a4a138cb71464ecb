"""The exception tree. Bad input is data (``ArticleError`` is recorded, never fatal).

FeedsError
├── ConfigError            (in feeds.config, not a subclass: a config that cannot be used)
├── ArticleError(path, reason)   one file that cannot become an item
│   ├── Unpublished          a draft: recorded the same way, and withdrawn from its item
│   └── Vanished             moved or deleted between the scan and the read: not recorded
├── StoreError             the state database failed (a batch stops and is retried)
├── IdentityGuardError     a run would re-issue too many item ids (nothing was changed)
└── OutputError            the output folder cannot be written
"""

from __future__ import annotations


class FeedsError(Exception):
    """Root of every error this package raises on purpose."""


class ArticleError(FeedsError):
    """A file that cannot become an item. ``reason`` is one human line."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[ArticleError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class Unpublished(ArticleError):
    """A post its front matter marks as not published (``draft: true``, ``published: false``)."""


class Vanished(ArticleError):
    """A file moved or deleted between the scan that listed it and its reading.

    Not bad input, so not recorded or logged one by one (a folder renamed during a batch
    vanishes hundreds at once): the next scan or watcher event settles the path.
    """


DRAFT_REASON = "a draft"  # how an Unpublished file's recorded reason begins


class StoreError(FeedsError):
    """The state store failed; the operation can be retried."""


class IdentityGuardError(FeedsError):
    """A run would replace too many existing stories by new ids; it was rolled back."""


class OutputError(FeedsError):
    """The output folder cannot be written."""
