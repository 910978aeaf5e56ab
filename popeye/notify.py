"""The duplicate-upload notice (SPEC section 7): SQS in production, the log
embedded.  A notice is a courtesy: failing to send one never fails a job."""

import json
import logging
from typing import Any, Protocol

from popeye import aws
from popeye.config import Settings

log = logging.getLogger("popeye.notify")

EXISTING_TEMPLATE = "email/24-uploadExisting.tt"
PENDING_TEMPLATE = "email/25-uploadPending.tt"


def duplicate_notice(
    *,
    email: str | None,
    displayname: str | None,
    template: str,
    media_uuid: str,
    title: str | None,
    poster_uri: str | None,
    filename: str,
) -> dict[str, Any]:
    """The message the mail service expects.  The pending notice has no
    poster yet, so its media entry carries no ``views``."""
    media: dict[str, Any] = {"uuid": media_uuid, "title": title}
    if template != PENDING_TEMPLATE:
        media["views"] = {"poster": {"uri": poster_uri}}
    return {
        "subject": "VIBLIO: Duplicate Video Uploaded",
        "to": [{"email": email, "name": displayname}],
        "template": template,
        "stash": {"user": {"displayname": displayname}, "model": {"media": [media]}, "filename": filename},
    }


class Notifier(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class SQSNotifier:
    def __init__(self, client, queue: str):
        """``queue`` is the queue's name or, as some legacy files have it, its URL."""
        self.client = client
        self.queue_name = queue
        self._queue_url = queue if queue.startswith(("http://", "https://")) else None

    def send(self, message: dict[str, Any]) -> None:
        if self._queue_url is None:
            self._queue_url = self.client.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        self.client.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))


class LogNotifier:
    def send(self, message: dict[str, Any]) -> None:
        log.info("duplicate notice: %s", json.dumps(message))


def from_settings(settings: Settings) -> Notifier:
    if settings.notifier == "sqs":
        return SQSNotifier(aws.client(settings, "sqs", region=settings.sqs_region or None), settings.email_queue)
    return LogNotifier()
