"""``feeds alerts ...``: test a webhook, list and retry queued alerts, deliver due ones once.

``register(sub)`` adds the subcommands to the main parser. ``feeds.cli`` is imported inside
the functions, so ``feeds.cli`` may import this module at any point.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from feeds.alerts import utc_now
from feeds.config import Config
from feeds.store import opened
from feeds.store.outbox import AlertFilter, OutboxRow

if TYPE_CHECKING:
    from feeds.delivery import Outcome

EXIT_FAILED, EXIT_UNKNOWN = 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``feeds alerts test|list|retry|deliver`` to the main parser's subcommands."""
    from feeds.cli import add_common, command

    alerts = command(
        sub, "alerts", "webhook alerts: test, list, retry, deliver",
        "See docs/webhooks.md. Exit 4 when there is no state database at --state.",
    )  # fmt: skip
    actions = alerts.add_subparsers(dest="alerts_command", required=True)

    test = command(
        actions, "test", "send a sample alert and print the answer",
        "Exit 1 when the receiver did not accept it, 2 when no webhook has that name.",
    )  # fmt: skip
    test.add_argument("name", help="webhook name from the config")
    test.set_defaults(func=cmd_test)

    listing = command(actions, "list", "list queued, delivered and dead alerts", "Newest first.")
    listing.add_argument("--failed", action="store_true", help="only failing and dead alerts")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (newest)")
    listing.set_defaults(func=cmd_list)

    retry = command(
        actions, "retry", "send alerts again (fresh retry window)",
        "Exit 1 when there is no such alert, or a delivery is sending it right now.",
    )  # fmt: skip
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="row id or event id (evt_...)")
    which.add_argument("--all", action="store_true", help="every failing and dead alert")
    retry.set_defaults(func=cmd_retry)

    deliver = command(
        actions, "deliver", "deliver due alerts once (for cron)",
        "Exit 1 only when alerts became dead letters (failures being retried are normal).",
    )  # fmt: skip
    deliver.set_defaults(func=cmd_deliver)

    for parser in (test, listing, retry, deliver):
        add_common(parser)


def _config(args: argparse.Namespace) -> Config:
    from feeds.cli import config_from

    return config_from(args)


# --- test -------------------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.name not in {webhook.name for webhook in config.webhooks}:
        names = ", ".join(w.name for w in config.webhooks) or "none configured"
        print(f"feeds: no webhook named {args.name!r} ({names})", file=sys.stderr)
        return EXIT_UNKNOWN
    import httpx  # here: every other command (feeds build, cron) starts ~0.1 s sooner

    from feeds.delivery import send_test

    with httpx.Client() as client:
        outcome = send_test(config, args.name, client)
    print(_describe(args.name, outcome))
    if outcome.body:
        print(outcome.body)
    return 0 if outcome.ok else EXIT_FAILED


def _describe(name: str, outcome: Outcome) -> str:
    status = f"HTTP {outcome.status}" if outcome.status is not None else "no answer"
    verdict = "ok" if outcome.ok else f"FAILED ({outcome.detail})"
    return f"{name}: {status}: {verdict}"


# --- list -------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    config = _config(args)
    which: AlertFilter = "failed" if args.failed else "all"
    with opened(config.state, existing=True) as store:
        rows = store.list_alerts(which, args.limit)
    for row in rows:
        print(json.dumps(row_record(row), ensure_ascii=False) if args.json else row_line(row))
    return 0


def _title(row: OutboxRow) -> str:
    try:
        return str(json.loads(row.payload)["data"]["item"]["title"])
    except (ValueError, KeyError, TypeError):
        return "?"


def row_record(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "webhook": row.webhook,
        "type": row.event_type,
        "item_id": row.item_id,
        "title": _title(row),
        "status": row.status,
        "attempts": row.attempts,
        "created": row.created.isoformat(),
        "next_attempt": row.next_attempt.isoformat() if row.status == "pending" else None,
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
        "digest_id": row.digest_id,
        "last_error": row.last_error,
    }


def row_line(row: OutboxRow) -> str:
    when = f"{row.created:%Y-%m-%d %H:%M}Z"
    error = f"  [{row.last_error}]" if row.last_error and row.status != "delivered" else ""
    return (
        f"{row.id}  {row.status:<9}  {row.webhook}  {row.event_type}  {when}  "
        f"attempts={row.attempts}  {row.event_id}  {_title(row)}{error}"
    )


# --- retry and deliver ------------------------------------------------------------------------


def cmd_retry(args: argparse.Namespace) -> int:
    config = _config(args)
    with opened(config.state, existing=True) as store:
        now = utc_now()
        count = store.retry_alerts(None if args.all else args.id, now)
        sending = not args.all and count == 0 and store.alert_leased(args.id, now)
    print(f"{count} alert(s) queued for delivery")
    if sending:
        print(f"feeds: alert {args.id!r} is being delivered right now; try again later",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    if not args.all and count == 0:
        print(f"feeds: no alert {args.id!r}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """Exit 1 only when alerts became dead letters (failures being retried are normal)."""
    from feeds.log import setup_logging

    config = _config(args)
    level = getattr(args, "log_level", None) or config.service.log_level
    setup_logging(level, config.service.log_format)
    import httpx

    from feeds.delivery import Deliverer

    with opened(config.state, existing=True) as store, httpx.Client() as client:
        report = Deliverer(config, store, client).deliver_due()
        backlog = store.alert_backlog()
    print(
        f"sent {report.sent} (digests {report.digests}), failed {report.failed}, "
        f"dead {report.dead}; {backlog} waiting"
    )
    return EXIT_FAILED if report.dead else 0
