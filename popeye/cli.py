"""``popeye-admin``: what an operator does by hand, without reading code.

Each command reads the same config files as the service (``--config-dir``,
``--deployment``) and works on the same journal, database and directories;
the commands that queue work tell the running service through its
notification route, and fall back to the journal (which the service picks up
at its next sweep, or when it starts) when it does not answer.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid as uuids

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from popeye.config import ConfigError, Settings, load_settings
from popeye.database import open_database
from popeye.health import Health
from popeye.jobs import run_one
from popeye.journal import STATES, Journal, job_view
from popeye.models import User
from popeye.uploads import (
    Refused,
    UploadRoot,
    confine,
    is_complete,
    restore_from_errors,
    return_to_errors,
    uploads_in_errors,
    write_upload,
)

console = Console()

#: An operator's explicit request is not refused for a full queue: the
#: runner takes it in turn.
UNBOUNDED = 10**9


def journal_of(settings: Settings) -> Journal:
    return Journal(os.path.join(settings.state_dir, "journal.db"))


def service_url(settings: Settings, given: str | None) -> str | None:
    """``--url``, else the ``listen`` endpoint when it is plain TCP."""
    if given:
        return given.rstrip("/")
    match = re.fullmatch(r"tcp:(\d+)(?::interface=([^:]+))?", settings.listen)
    if not match:
        return None
    host = match.group(2) or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{match.group(1)}"


def notify(settings: Settings, url: str | None, path: str) -> dict | None:
    """Brewtus's request to the running service; None when it does not answer."""
    if url is None:
        return None
    query = urllib.parse.urlencode({"path": path, "skip_faces": "", "try_photos": ""})
    request = urllib.request.Request(f"{url}/processor/process?{query}")
    if settings.notify_token:
        request.add_header("X-Popeye-Token", settings.notify_token)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        try:
            return json.loads(error.read() or b"{}")
        except ValueError:
            return {"error": True, "message": f"HTTP {error.code} from {url}"}
    except OSError:
        return None


def queue(settings: Settings, url: str | None, path: str) -> str:
    """Hand ``path`` to the service, or to the journal when it is down."""
    reply = notify(settings, url, path)
    if reply is not None:
        if reply.get("error") or "job" not in reply:
            raise SystemExit(f"refused: {reply.get('message', reply)}")
        return f"queued by the service ({reply['job']})"
    try:
        upload = confine(path, UploadRoot(settings.upload_dir))
    except Refused as refusal:
        raise SystemExit(f"refused: {refusal.message}") from None
    state, _ = journal_of(settings).admit(upload.uuid, upload.path, capacity=UNBOUNDED)
    return f"{state} in the journal; the service runs it at its next sweep or start"


# -- commands -------------------------------------------------------------------


def check_config(settings: Settings, args) -> int:
    console.print(f"deployment: {settings.deployment or '(none)'}")
    for path in settings.config_files:
        console.print(f"config file: {path}")
    table = Table("key", "value", title="settings (secrets masked)")
    for key, value in settings.describe().items():
        table.add_row(key, str(value))
    console.print(table)
    report = Health(settings, open_database(settings), journal_of(settings)).report()
    for name, check in report["checks"].items():
        mark = "[green]ok[/green]" if check["ok"] else "[red]FAILING[/red]"
        console.print(f"{name:<11} {mark}  {check['detail']}")
    return 0 if report["ready"] else 1


def initdb(settings: Settings, args) -> int:
    if settings.database_url.get_backend_name() != "sqlite":
        raise SystemExit("initdb creates the embedded SQLite database only; the MySQL schema is not Popeye's")
    open_database(settings)
    console.print(f"database ready: {settings.database_url.database}")
    return 0


def add_user(settings: Settings, args) -> int:
    user_uuid = args.uuid or str(uuids.uuid4())
    with open_database(settings)() as session, session.begin():
        session.add(User(uuid=user_uuid, email=args.email, displayname=args.name))
    console.print(f"user {args.email}: {user_uuid}")
    return 0


def jobs(settings: Settings, args) -> int:
    table = Table("uuid", "state", "step", "progress", "attempts", "retries", "updated", "last error")
    for entry in journal_of(settings).recent(args.state, args.limit):
        view = job_view(entry)
        progress = "" if view["progress"] is None else f"{view['progress']}%"
        table.add_row(view["uuid"], view["state"], view["step"] or "", progress, str(view["attempts"]),
                      str(view["retries"]), view["updated"], view["last_error"] or "")
    console.print(table)
    return 0


def show(settings: Settings, args) -> int:
    entry = journal_of(settings).get(args.uuid)
    if entry is None:
        raise SystemExit(f"no job for {args.uuid}")
    console.print_json(json.dumps(job_view(entry)))
    return 0


def retry(settings: Settings, args) -> int:
    console.print(f"{args.uuid}: {retry_one(settings, args.url, args.uuid)}")
    return 0


def retry_one(settings: Settings, url: str | None, file_id: str) -> str:
    """Move an upload's files back from ``errors/`` and queue it again."""
    try:
        path = restore_from_errors(settings.upload_dir, file_id)
    except Refused as refusal:
        raise SystemExit(refusal.message) from None
    try:
        return queue(settings, service_url(settings, url), path)
    except BaseException:
        return_to_errors(settings.upload_dir, file_id)
        raise


def reprocess_errors(settings: Settings, args) -> int:
    uploads = uploads_in_errors(settings.upload_dir)
    for file_id in uploads:
        console.print(f"{file_id}: {retry_one(settings, args.url, file_id)}")
    console.print(f"{len(uploads)} upload(s) queued again")
    return 0


def process(settings: Settings, args) -> int:
    """One job in the foreground, with a progress bar, for debugging."""
    try:
        upload = confine(os.path.abspath(args.path), UploadRoot(settings.upload_dir))
    except Refused as refusal:
        raise SystemExit(f"refused: {refusal.message}") from None
    if not is_complete(upload):
        raise SystemExit("refused: the upload is not complete")
    journal = journal_of(settings)
    state, admitted = journal.admit(upload.uuid, upload.path, capacity=UNBOUNDED)
    if not admitted:
        raise SystemExit(f"{upload.uuid} is already {state} in the service")
    outcome: list[str] = []
    job = threading.Thread(target=lambda: outcome.append(run_one(settings, open_database(settings), journal, upload)))
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as bar:
        task = bar.add_task(upload.uuid, total=None)
        job.start()
        while job.is_alive():
            entry = journal.get(upload.uuid)
            bar.update(task, description=f"{upload.uuid} {entry['step'] or ''}", completed=entry["bytes_done"],
                       total=entry["bytes_total"])
            time.sleep(0.1)
    entry = journal.get(upload.uuid)
    console.print(f"{upload.uuid}: {entry['state']}" + (f" ({entry['last_error']})" if entry["last_error"] else ""))
    return 0 if outcome and outcome[0] in ("done", "duplicate-skipped") else 1


def simulate_upload(settings: Settings, args) -> int:
    """A Brewtus-shaped upload of FILE in upload_dir, and Brewtus's notification."""
    extension = os.path.splitext(args.file)[1]
    client_path = (args.title + extension) if args.title else os.path.basename(args.file)
    upload = write_upload(settings.upload_dir, str(uuids.uuid1()), args.file, args.user, client_path)
    console.print(f"upload {upload.uuid} written to {settings.upload_dir}")
    console.print(f"{upload.uuid}: {queue(settings, service_url(settings, args.url), upload.path)}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="popeye-admin", description=__doc__.split("\n\n")[0])
    top.add_argument("--config-dir", help="directory of popeye.config and its overlays")
    top.add_argument("--deployment", help="overlay to read (prod, staging, local); default $DEPLOYMENT")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(function=function)
        return sub

    command("check-config", check_config, "show the files and settings loaded and check every backend")
    command("initdb", initdb, "create the embedded SQLite database")
    sub = command("add-user", add_user, "add a row to users")
    sub.add_argument("email")
    sub.add_argument("--uuid", help="the user's uuid (default: a new one)")
    sub.add_argument("--name", help="display name")
    sub = command("jobs", jobs, "list recent jobs")
    sub.add_argument("--state", choices=STATES)
    sub.add_argument("--limit", type=int, default=50)
    sub = command("show", show, "one job as the journal has it")
    sub.add_argument("uuid")
    for name, function, help_text in (
        ("retry", retry, "move a failed upload back from errors/ and queue it again"),
        ("reprocess-errors", reprocess_errors, "retry every upload in errors/"),
    ):
        sub = command(name, function, help_text)
        if name == "retry":
            sub.add_argument("uuid")
        sub.add_argument("--url", help="the running service (default: from 'listen')")
    sub = command("process", process, "run one job in the foreground, with a progress bar")
    sub.add_argument("path")
    sub = command("simulate-upload", simulate_upload, "write a Brewtus-shaped upload and notify Popeye")
    sub.add_argument("file")
    sub.add_argument("--user", required=True, help="uuid of the uploading user")
    sub.add_argument("--title", help="title the client would have sent (default: the file's name)")
    sub.add_argument("--url", help="the running service (default: from 'listen')")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config_dir, args.deployment)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return args.function(settings, args)


if __name__ == "__main__":
    sys.exit(main())
