"""feeds: turn a folder of Hexo/Jekyll news articles into RSS/Atom feeds and webhook alerts."""

__version__ = "0.1.0"
