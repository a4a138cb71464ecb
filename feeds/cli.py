"""Command line: argument parsing and one clear line per failure. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from feeds import __doc__ as FEEDS_DOC
from feeds import __version__, preflight
from feeds.alerts_cli import register as register_alerts
from feeds.config import Config, ConfigError, load_config
from feeds.errors import FeedsError, OutputError, StoreError
from feeds.log import setup_logging
from feeds.pipeline import BuildReport, Pipeline
from feeds.publish import fsync_dir
from feeds.store import opened

if TYPE_CHECKING:
    from feeds.alerts import AlertPlanner

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("config/feeds.toml")
EXIT_FAILED, EXIT_CONFIG, EXIT_OUTPUT, EXIT_STORE = 1, 2, 3, 4
EXIT_CODES = f"""exit codes (every command):
  0  ok; `feeds build` too when some files were rejected (each is listed; `feeds errors`)
  {EXIT_FAILED}  the command failed; the message on stderr says why
  {EXIT_CONFIG}  bad usage or bad config (`feeds check-config` explains the config)
  {EXIT_OUTPUT}  the output folder is not writable
  {EXIT_STORE}  the state database is missing, locked or corrupt

Documentation: README.md and docs/ in the project folder."""
REISSUE_HELP = "let this run replace many stories by new ids (see dedupe.max_reissue_share)"
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVEL_HELP = "log level (default: service.log_level in the config, INFO)"


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, details: str
) -> argparse.ArgumentParser:
    """A sub-command whose own --help says what it does and how it exits, not only its flags."""
    return sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n{details}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def path_argument(value: str) -> Path:
    """``--output ""`` (a shell variable set to nothing) would be the working directory."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path, which would mean the working directory")
    return Path(value)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=path_argument,
        help="config file (default: $FEEDS_CONFIG, else config/feeds.toml here)",
    )
    parser.add_argument(
        "--articles", type=path_argument, action="append", help="article folder (repeat)"
    )
    parser.add_argument("--output", type=path_argument, help="output folder for feeds")
    parser.add_argument("--state", type=path_argument, help="state database file (SQLite)")
    # Also after the sub-command (`feeds build --log-level DEBUG`, `python service.py
    # --log-level DEBUG`); SUPPRESS keeps a level given before it (`feeds --log-level ...`).
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=LOG_LEVEL_HELP
    )


def config_path(args: argparse.Namespace) -> Path | None:
    """--config, else FEEDS_CONFIG, else config/feeds.toml in the working directory if there."""
    path: Path | None = args.config or _env_config()
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    return path


def no_config_file() -> preflight.Finding:
    """Run outside the project folder without --config, a command uses the built-in defaults
    (articles/, output/, state/ in the working directory): say so instead of a silent 'ok'."""
    return preflight.Finding(
        "warning",
        "no config file",
        f"{DEFAULT_CONFIG} is not in {Path.cwd()} and neither --config nor FEEDS_CONFIG "
        "is given, so the built-in defaults are used (articles, output and state in this folder)",
    )


def config_from(args: argparse.Namespace) -> Config:
    path = config_path(args)
    overrides: dict[str, Any] = {}
    if args.articles:
        overrides["articles"] = [str(p) for p in args.articles]
    for name in ("output", "state"):
        if getattr(args, name, None) is not None:
            overrides[name] = str(getattr(args, name))
    listen = {n: getattr(args, n) for n in ("host", "port") if getattr(args, n, None) is not None}
    if listen:  # `feeds run --port`: the default base_url follows it
        overrides["server"] = listen
    return load_config(path, overrides)


def _env_config() -> Path | None:
    value = os.environ.get("FEEDS_CONFIG")
    return Path(value) if value else None


def check_output_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output folder {output} is not writable: {exc.strerror or exc}") from exc


def _progress_factory(stream: TextIO) -> Callable[[int], Callable[[int], None]] | None:
    if not stream.isatty():
        return None

    def factory(total: int) -> Callable[[int], None]:
        if total < 500:
            return lambda n: None
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=total, unit="file", file=stream, leave=False)

        def update(count: int) -> None:
            bar.update(count)
            if bar.n >= total:
                bar.close()

        return update

    return factory


def cmd_build(args: argparse.Namespace) -> int:
    config = config_from(args)
    setup_logging(args.log_level or config.service.log_level, config.service.log_format)
    check_output_writable(config.output)
    if config_path(args) is None:
        log.warning("no config file: %s", no_config_file().message)
    preflight.log_findings(preflight.check(config, folders=False), log)
    planner = _alert_planner(config)
    with opened(config.state, existing=False) as store:
        pipeline = Pipeline(
            config,
            store,
            workers=args.workers,
            allow_reissue=args.allow_reissue,
            on_event=planner,
        )
        report = pipeline.sync(_progress_factory(sys.stderr))
        rejected_now, _drafts = store.count_errors()
    print_summary(report, sys.stdout, rejected_now)
    if planner is not None and planner.queued:
        print(f"alerts: {planner.queued} queued (sent by the service or `feeds alerts deliver`)")
    for path, reason in report.batch.rejected:
        print(f"rejected: {path}: {reason}", file=sys.stderr)
    if config.websub.hubs and not args.no_ping:
        ping_hubs(config, report.render.written, sys.stdout)
    return 0


def _alert_planner(config: Config) -> AlertPlanner | None:
    """Queue the alerts of what a build finds, as the service would: run from cron with
    ``feeds alerts deliver``, or beside a stopped service, new stories must not go unalerted."""
    if not config.webhooks:
        return None
    from feeds.alerts import AlertPlanner

    return AlertPlanner(config)


def ping_hubs(config: Config, written: list[str], out: TextIO) -> None:
    """Tell the WebSub hubs which feeds this build changed: one try each (the service retries;
    a ping missed here is made at the feed's next change, and readers still poll)."""
    import httpx

    from feeds.websub import HubNotifier, changed_feed_urls

    urls = changed_feed_urls(config.base_url, written)
    if not urls:
        return
    with httpx.Client(follow_redirects=False) as client:
        notifier = HubNotifier(config.websub.hubs, client)
        notifier.changed(urls)
        result = notifier.send_due()
    failed = len(result.retrying) + len(result.refused)
    out.write(f"websub: {result.sent} hub ping(s) sent, {failed} failed\n")


def print_summary(report: BuildReport, out: TextIO, rejected_now: int = 0) -> None:
    """``files rejected`` counts this run's news; a file still broken from an earlier run is
    not read again, so ``rejected_now`` (all of them) keeps a rerun from looking clean."""
    batch, render = report.batch, report.render
    all_rejected = f" ({rejected_now} in all: feeds errors)" if rejected_now else ""
    out.write(
        f"files seen {report.scanned}; items new {batch.new}, updated {batch.updated}, "
        f"unchanged {batch.unchanged}, removed {batch.removed}; duplicates merged "
        f"{batch.merged}; files rejected {len(batch.rejected)}{all_rejected}; feeds written "
        f"{len(render.written)}\n"
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args)
    config = config_from(args)
    findings = preflight.check(config)
    if path is None:
        findings.insert(0, no_config_file())
    errors = [f for f in findings if f.severity == "error"]
    verdict = f"{len(errors)} error(s)" if errors else "ok"
    print(
        f"{verdict}: {len(config.articles)} article folder(s), {len(config.sources)} sources, "
        f"{len(config.topics)} topics, {len(config.webhooks)} webhooks; output {config.output}; "
        f"config {path or '(none: built-in defaults)'}"
    )
    for finding in findings:
        print(finding)
    return 2 if errors else 0


def cmd_items(args: argparse.Namespace) -> int:
    config = config_from(args)
    with opened(config.state, existing=True) as store:
        for item in store.iter_items(include_removed=args.all):
            if args.json:
                record: dict[str, object] = {
                    "id": item.id,
                    "title": item.title,
                    "link": item.link,
                    "published": item.published.isoformat(),
                    "updated": item.updated.isoformat(),
                    "source": item.source,
                    "topics": list(item.topics),
                    "paths": list(item.paths),
                }
                if args.all:
                    record["removed"] = item.removed
                print(json.dumps(record, ensure_ascii=False))
            else:
                topics = ",".join(item.topics) or "-"
                when = f"{item.published:%Y-%m-%d %H:%M}Z"
                print(f"{item.id}  {when}  {item.source}  {topics}  {item.title}")
    return 0


def cmd_errors(args: argparse.Namespace) -> int:
    config = config_from(args)
    with opened(config.state, existing=True) as store:
        for error in store.errors():
            if args.json:
                record = {
                    "path": error.path,
                    "reason": error.reason,
                    "first_seen": error.first_seen.isoformat(),
                    "last_seen": error.last_seen.isoformat(),
                    "count": error.count,
                }
                print(json.dumps(record, ensure_ascii=False))
            else:
                print(f"{error.path}: {error.reason}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the state database, safe while the service runs."""
    config = config_from(args)
    dest = Path(args.dest).absolute()
    if dest.exists() and not args.force:
        raise FeedsError(f"{dest} exists (--force replaces it)")
    if not dest.parent.is_dir():
        raise FeedsError(f"cannot write {dest}: there is no folder {dest.parent} (create it first)")
    temp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with opened(config.state, existing=True) as store:
            store.backup_to(temp)
        os.replace(temp, dest)
        fsync_dir(dest.parent)
    finally:
        temp.unlink(missing_ok=True)
    print(f"backup: {dest} ({dest.stat().st_size / 1e6:.1f} MB, integrity ok)")
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    """Stories told by more than one file, with how similar each file was when it joined."""
    config = config_from(args)
    with opened(config.state, existing=True) as store:
        for item_id, members in store.duplicate_groups():
            item = store.item(item_id)
            listing = [
                {
                    "path": m.path,
                    "source": m.source_slug,
                    "similarity": 1.0 if m.near_score is None else m.near_score,
                    "match": "exact" if m.near_score is None else "near",
                    "present": m.present,
                }
                for m in members
            ]
            if args.json:
                group = {
                    "id": item_id,
                    "title": item.title if item else None,
                    "published": item.published.isoformat() if item else None,
                }
                print(json.dumps(group | {"files": listing}, ensure_ascii=False))
                continue
            print(f"{item_id}  {item.title if item else ''}")
            for e in listing:
                print(f"  {e['similarity']:.2f} {e['match']:5} {e['source']}  {e['path']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from feeds.service import run_service

    config = config_from(args)
    return run_service(config, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feeds",
        description=FEEDS_DOC,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"feeds {__version__}")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help=LOG_LEVEL_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    build = command(
        sub, "build", "scan article folders and write the feeds",
        "Exit 0 also when some files were rejected (each is listed on stderr; `feeds errors`);\n"
        "2 bad config, 3 output folder not writable, 4 state database problem.",
    )  # fmt: skip
    add_common(build)
    build.add_argument("--workers", type=int, default=None, help="parser processes (default: CPUs)")
    build.add_argument("--allow-reissue", action="store_true", help=REISSUE_HELP)
    build.add_argument(
        "--no-ping", action="store_true", help="do not tell the WebSub hubs what changed"
    )
    build.set_defaults(func=cmd_build)

    check = command(
        sub, "check-config", "validate a config file and explain problems",
        "Names the file it read, then every problem with its key. Exit 2 on any error;\n"
        "warnings alone (an article folder that does not exist yet) exit 0.",
    )  # fmt: skip
    add_common(check)
    check.set_defaults(func=cmd_check_config)

    items = command(
        sub, "items", "list stored items", "Exit 4 when there is no state database at --state."
    )
    add_common(items)
    items.add_argument("--json", action="store_true", help="one JSON object per line")
    items.add_argument("--all", action="store_true", help="include removed items")
    items.set_defaults(func=cmd_items)

    errors = command(
        sub, "errors", "list rejected files with their reasons",
        "Exit 0 also when files are listed; 4 when there is no state database at --state.",
    )  # fmt: skip
    add_common(errors)
    errors.add_argument("--json", action="store_true", help="one JSON object per line")
    errors.set_defaults(func=cmd_errors)

    duplicates = command(
        sub, "duplicates", "list stories merged from several files",
        "Each file with its similarity when it joined (exact, or near with its score).",
    )  # fmt: skip
    add_common(duplicates)
    duplicates.add_argument("--json", action="store_true", help="one JSON object per group")
    duplicates.set_defaults(func=cmd_duplicates)

    backup = command(
        sub, "backup", "copy the state database consistently (safe while the service runs)",
        "Exit 1 when DEST exists (without --force) or its folder does not; 4 when the state\n"
        "database is missing or the copy fails its integrity check.",
    )  # fmt: skip
    add_common(backup)
    backup.add_argument("dest", help="file to write (a compacted SQLite database)")
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.set_defaults(func=cmd_backup)

    register_alerts(sub)

    run = command(
        sub, "run", "run the service: watch, schedule, serve",
        "The same as `python service.py`. SIGTERM or SIGINT (Ctrl-C) stops it cleanly (exit 0);\n"
        "SIGHUP re-reads the config and restarts in place. Exit 2 bad config, 3 output folder\n"
        "not writable, 4 state database problem, 1 the address cannot be bound.",
    )  # fmt: skip
    add_service_arguments(run)
    run.set_defaults(func=cmd_run)
    return parser


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--host", help="HTTP address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default: server.port, 8080; 0: any)")
    parser.add_argument("--no-http", action="store_true", help="do not serve HTTP")
    parser.add_argument(
        "--workers", type=int, default=None, help="parser processes (default: CPUs)"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="default: service.log_format, text"
    )
    parser.add_argument("--allow-reissue", action="store_true", help=REISSUE_HELP)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return result
    except ConfigError as exc:
        print(f"feeds: bad config {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except OutputError as exc:
        print(f"feeds: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except StoreError as exc:
        print(f"feeds: {exc}", file=sys.stderr)
        return EXIT_STORE
    except FeedsError as exc:
        print(f"feeds: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `feeds items | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
