"""Signing one delivery attempt: where each platform expects its signature, and the bytes sent.

* Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
  ``"{webhook-id}.{webhook-timestamp}.{body}"``, keyed by a ``whsec_`` (base64) or plain secret.
* DingTalk 加签: ``timestamp`` and ``sign`` query parameters on the URL.
* Feishu 签名校验: ``timestamp`` and ``sign`` fields in the JSON body.
* ``prepare_request`` -> ``OutgoingRequest``: URL, headers (``webhook-id``,
  ``webhook-timestamp``, ``user-agent``) and body bytes of one attempt.

Pure. Does not build messages (``feeds.alert_messages``) or send them (``feeds.delivery``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from feeds.alert_payload import encode_body
from feeds.config import WebhookFormat

# --- signing ----------------------------------------------------------------------------------


def standard_webhook_key(secret: str) -> bytes:
    """A ``whsec_`` secret is base64 after the prefix; any other secret is used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def standard_webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + _hmac_b64(standard_webhook_key(secret), signed)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: base64 HMAC-SHA256 keyed by the secret over "timestamp\\nsecret" (not yet
    URL-encoded: ``dingtalk_signed_url`` encodes it as a query parameter)."""
    return _hmac_b64(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode())


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    parts = urlsplit(url)
    extra = urlencode({"timestamp": str(timestamp_ms), "sign": dingtalk_sign(secret, timestamp_ms)})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu 签名校验: base64 HMAC-SHA256 keyed by "timestamp\\nsecret" over an empty message."""
    return _hmac_b64(f"{timestamp}\n{secret}".encode(), b"")


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    url: str
    headers: dict[str, str]
    body: bytes


USER_AGENT: Final = "feeds-alerts/1"


def prepare_request(
    fmt: WebhookFormat,
    url: str,
    secret: str | None,
    message_id: str,
    message: dict[str, Any],
    now: datetime,
) -> OutgoingRequest:
    """Sign one attempt. Every format carries ``webhook-id`` (stable) and ``webhook-timestamp``
    (this attempt); the signature goes where the platform expects it."""
    seconds = int(now.timestamp())
    if fmt == "feishu" and secret:
        message = {**message, "timestamp": str(seconds), "sign": feishu_sign(secret, seconds)}
    if fmt == "dingtalk" and secret:
        url = dingtalk_signed_url(url, secret, int(now.timestamp() * 1000))
    body = encode_body(message)
    headers = {
        "content-type": "application/json; charset=utf-8",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(seconds),
    }
    if fmt == "json" and secret:
        headers["webhook-signature"] = standard_webhook_signature(secret, message_id, seconds, body)
    return OutgoingRequest(url, headers, body)
