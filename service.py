#!/usr/bin/env python3
"""feeds as a background service: `python service.py [flags]` is `feeds run [flags]`.

The composition lives in feeds/service.py; this file only hands over the command line.
Flags: the same as `feeds build` (--config, --articles, --output, --state) plus --host,
--port, --no-http, --workers, --log-format.
"""

import sys

from feeds.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
