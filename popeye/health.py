"""Is this Popeye ready to process uploads?  One check per backend.

Each check asks its backend something cheap with one attempt and short
timeouts, so ``GET /health`` answers within seconds even when a backend is
down, and says which one and why.
"""

import os
import time
from typing import Any

from sqlalchemy import text

from popeye import aws
from popeye.config import Settings
from popeye.journal import Journal
from popeye.retry import describe
from popeye.workflow import DOMAIN


def _writable_directory(path: str) -> None:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable")


class Health:
    def __init__(self, settings: Settings, session_factory, journal: Journal):
        self.settings = settings
        self.session_factory = session_factory
        self.journal = journal
        self._clients: dict[str, Any] = {}

    def _client(self, service: str, region: str | None = None):
        if service not in self._clients:
            self._clients[service] = aws.client(
                self.settings, service, region=region, attempts=1, connect_timeout=2, read_timeout=5
            )
        return self._clients[service]

    def database(self) -> None:
        with self.session_factory() as session:
            session.execute(text("SELECT 1"))

    def storage(self) -> None:
        if self.settings.storage == "s3":
            self._client("s3").head_bucket(Bucket=self.settings.bucket_name)
        else:
            _writable_directory(self.settings.local_storage_dir)

    def workflow(self) -> None:
        if self.settings.workflow == "swf":
            self._client("swf").describe_domain(name=DOMAIN)
        elif self.settings.workflow == "stepfunctions":
            self._client("stepfunctions").describe_state_machine(stateMachineArn=self.settings.state_machine_arn)
        else:
            _writable_directory(self.settings.workflow_spool_dir)

    def journal_writable(self) -> None:
        self.journal.check_writable()

    def upload_dir(self) -> str:
        path = self.settings.upload_dir
        if os.path.isdir(path):
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(f"{path} is not readable and writable")
            return "ok"
        if not os.access(os.path.dirname(path), os.W_OK | os.X_OK):
            raise FileNotFoundError(f"{path} is missing and cannot be created")
        return "missing; created when the service starts"

    def report(self) -> dict[str, Any]:
        """``{"ready": bool, "checks": {name: {"ok", "detail", "seconds"}}}``."""
        checks = {}
        for name, check in (
            ("database", self.database),
            ("storage", self.storage),
            ("workflow", self.workflow),
            ("journal", self.journal_writable),
            ("upload_dir", self.upload_dir),
        ):
            started = time.monotonic()
            try:
                detail = check() or "ok"
            except Exception as exc:
                checks[name] = {"ok": False, "detail": describe(exc)}
            else:
                checks[name] = {"ok": True, "detail": detail}
            checks[name]["seconds"] = round(time.monotonic() - started, 3)
        return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}
