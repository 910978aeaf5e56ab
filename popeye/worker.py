"""The job: one finished upload to S3, the database and the workflow.

``Background`` owns the job's database session and ``Worker.run()`` is the
pipeline of SPEC section 3, one method per step, in order.  Any exception
ends the job through ``Worker.handle_error`` (the runner's errback), which
moves the upload's files into ``errors/`` so nothing is lost.

Every effect can be repeated: objects are put under fixed keys, a ``media``
row carrying this job's own uuid is this job's earlier attempt (never a
duplicate upload), and the workflow refuses a second start of its id.  So a
job cut short by a crash is simply run again from the start, except that a
job which had reached ``clean_up`` only finishes cleaning up.  Each step is
retried while it fails transiently (:mod:`popeye.retry`), and the journal
records the step, the retries and the end.
"""

import enum
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from popeye import logs
from popeye.journal import BUSY, DONE, DUPLICATE_SKIPPED, FAILED, Journal
from popeye.metrics import Metrics
from popeye.models import (
    Community,
    Contact,
    ContactGroup,
    Media,
    MediaAlbum,
    MediaAsset,
    MediaWorkflowStage,
    User,
    utcnow,
)
from popeye.notify import EXISTING_TEMPLATE, PENDING_TEMPLATE, Notifier, duplicate_notice
from popeye.retry import Interrupted, call_with_retries, describe
from popeye.storage import ObjectStore
from popeye.uploads import Upload
from popeye.workflow import WorkflowStarter, workflow_input

HASH_BLOCK = 1024 * 1024

#: The outcome (for metrics) of a job a shutdown put back in the queue.
INTERRUPTED = "interrupted"

#: A job started this often without ending (it kills the process, or every
#: stop interrupts it) fails instead of being resumed forever.
MAX_ATTEMPTS = 10

class JobError(Exception):
    """A step cannot go on; the message says why in words an operator can use."""


class Stop(enum.Enum):
    """A step ended the job early without an error."""

    OTHER_JOB = "another job holds the upload's lock"
    DUPLICATE = "the user already has this video"


@dataclass(frozen=True)
class Backends:
    """What a job talks to besides its database session.

    ``cancel`` is set when the service must stop now: retries stop waiting
    and long reads stop at the next block, and the job goes back to the
    journal's queue.
    """

    store: ObjectStore
    workflow: WorkflowStarter
    notifier: Notifier
    bucket: str
    journal: Journal
    metrics: Metrics
    retry_budget: float
    cancel: threading.Event


def client_filename(metadata: dict[str, Any], main_path: str) -> str:
    """The client's own path for the file, else the upload's base name."""
    return _client_path(metadata) or os.path.basename(main_path)


def title_from(metadata: dict[str, Any]) -> str | None:
    """The last component of the client's path (Windows or POSIX) without
    its extension, or None when the client sent no path."""
    path = _client_path(metadata)
    if not path:
        return None
    return os.path.splitext(re.split(r"[\\/]", path)[-1])[0]


def _client_path(metadata: dict[str, Any]) -> str | None:
    file = metadata.get("file")
    path = file.get("Path") if isinstance(file, dict) else None
    return str(path) if path else None


def flags_from(metadata: dict[str, Any]) -> tuple[bool, str | bool, str | bool]:
    """(skip_faces, try_photos, album_uuid) by the rules of SPEC section 3 step 7."""
    try_photos = metadata.get("try_photos")
    if try_photos == 2:
        photos: str | bool = "existing_user"
    elif try_photos:
        photos = "new_user"
    else:
        photos = False
    return bool(metadata.get("skip_faces")), photos, metadata.get("album_uuid") or False


def md5_of(path: str, cancel: threading.Event) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        while block := stream.read(HASH_BLOCK):
            if cancel.is_set():
                raise Interrupted("stopping while hashing")
            digest.update(block)
    return digest.hexdigest()


class Progress:
    """The transfer manager's progress callback: records bytes sent in the
    journal (at most twice a second) and stops the transfer on ``cancel``."""

    INTERVAL = 0.5

    def __init__(self, backends: "Backends", uuid: str, total: int):
        self.journal, self.metrics, self.cancel = backends.journal, backends.metrics, backends.cancel
        self.uuid, self.total = uuid, total
        self.done = 0
        self._lock = threading.Lock()  # the transfer manager calls from several threads
        self._recorded = 0.0

    def __call__(self, sent: int) -> None:
        if self.cancel.is_set():
            raise Interrupted("stopping during an upload")
        self.metrics.uploaded.inc(sent)
        with self._lock:
            self.done += sent
            now = time.monotonic()
            if now - self._recorded < self.INTERVAL and self.done < self.total:
                return
            self._recorded = now
        self.journal.progressed(self.uuid, min(self.done, self.total), self.total)


def _move_to_errors(path: str) -> None:
    """Into ``errors/`` beside it; an earlier failure's file of the same name
    is kept, this one gets a timestamp suffix."""
    errors = os.path.join(os.path.dirname(path), "errors")
    os.makedirs(errors, exist_ok=True)
    target = os.path.join(errors, os.path.basename(path))
    if os.path.exists(target):
        target += time.strftime(".%Y%m%dT%H%M%S")
    os.rename(path, target)


class Background:
    """Runs a job with its own database session: open it, ``run()``, commit;
    roll back and close on error.  Subclasses implement ``run()``."""

    def __init__(self, session_factory: sessionmaker[Session], log: logging.Logger, data: dict[str, Any]):
        self.session_factory = session_factory
        self.log = log
        self.data = dict(data)
        self.orm: Session | None = None

    def execute(self) -> None:
        self.orm = self.session_factory()
        try:
            self.run()
            self.orm.commit()
        except BaseException:
            self.orm.rollback()
            raise
        finally:
            self.orm.close()

    def run(self) -> None:
        raise NotImplementedError


class Worker(Background):
    """The legacy pipeline over one upload (SPEC section 3, steps 1 to 11)."""

    STEPS = (
        "take_lock",
        "check_files",
        "parse_files",
        "name_media",
        "hash_main",
        "check_duplicates",
        "read_flags",
        "store_s3",
        "store_db",
        "start_workflow",
        "clean_up",
    )

    def __init__(self, session_factory, log, data, backends: Backends):
        super().__init__(session_factory, log, data)
        self.backends = backends
        self.upload = Upload(self.data["full_filename"])
        self.uuid = self.upload.uuid
        key = f"{self.uuid}/{self.uuid}"
        self.files: dict[str, dict[str, str | None]] = {
            "main": {"ifile": self.upload.path, "ofile": self.upload.path, "key": key},
            "metadata": {
                "ifile": self.upload.metadata_path,
                "ofile": self.upload.metadata_path,
                "key": f"{key}_metadata.json",
            },
            "info": {"ifile": self.upload.info_path, "ofile": self.upload.info_path, "key": f"{key}.json"},
            "media_log": {"ifile": None, "ofile": self.upload.log_path, "key": None},
        }
        self.popeye_log = logs.job_logger(self.uuid, self.upload.log_path)
        self.step = "queued"
        self.started: float | None = None
        self.user: User | None = None
        self._lock_fd: int | None = None

    # -- the pipeline ----------------------------------------------------

    def run(self) -> None:
        journal = self.backends.journal
        entry = journal.get(self.uuid)
        steps = self.STEPS
        if entry and entry["step"] == "clean_up":
            steps = ("take_lock", "clean_up")  # everything else was done before a crash
        if entry and entry["attempts"] >= MAX_ATTEMPTS:
            self.step = "take_lock"
            self.take_lock()
            raise JobError(f"started {entry['attempts']} times without ending; giving up")
        journal.started(self.uuid)
        self.started = time.monotonic()
        for step in steps:
            if self.backends.cancel.is_set():
                raise Interrupted(f"stopping before {step}")
            self.step = step
            journal.entered(self.uuid, step)
            with self.backends.metrics.step_duration.labels(step).time():
                outcome = call_with_retries(
                    getattr(self, step), self.backends.retry_budget, self.backends.cancel, self._retrying
                )
            if outcome is Stop.OTHER_JOB:
                self.popeye_log.info("%s: %s; stopping", self.uuid, outcome.value)
                logs.close_job_logger(self.popeye_log)
                self._ended(BUSY, outcome.value)
                return
            if outcome is Stop.DUPLICATE:
                self.event("Duplicate Video Skipped")
                self.step = "clean_up"
                journal.entered(self.uuid, "clean_up")
                self.clean_up(DUPLICATE_SKIPPED)
                return

    def _retrying(self, error: BaseException, delay: float) -> None:
        """Before waiting out a transient error: undo the step's half-done
        transaction and record the retry."""
        self.orm.rollback()
        self.popeye_log.warning(
            "%s: step %s failed transiently, retrying in %.1fs: %s", self.uuid, self.step, delay, describe(error)
        )
        self.backends.journal.retried(self.uuid, f"{self.step}: {describe(error)}")
        self.backends.metrics.retries.labels(type(error).__name__).inc()

    def _ended(self, outcome: str, error: str | None = None) -> None:
        """Record the job's end in the journal and the metrics."""
        metrics = self.backends.metrics
        metrics.jobs.labels(outcome).inc()
        if self.started is not None:
            metrics.job_duration.observe(time.monotonic() - self.started)
        if outcome == INTERRUPTED:
            self.backends.journal.requeued(self.uuid)
        else:
            self.backends.journal.finished(self.uuid, outcome, error)

    def take_lock(self) -> Stop | None:
        """Step 1: an exclusive, non-blocking lock on ``<path>.lock``."""
        path = self.upload.lock_path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return Stop.OTHER_JOB
            # The holder before us may have removed the file after we opened
            # it: then we hold a lock nobody else can see, so take it again.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    self._lock_fd = fd
                    return None
            except FileNotFoundError:
                pass
            os.close(fd)

    def check_files(self) -> None:
        """Step 2: main, info and metadata exist and are readable.  The route
        confined main (symlinks resolved) when it admitted the job; none of
        the three may be a symlink now, or a file swapped in while the job
        waited could lead out of the upload directory."""
        for label in ("main", "info", "metadata"):
            path = self.files[label]["ifile"]
            if not (os.path.isfile(path) and os.access(path, os.R_OK)):
                raise JobError(f"{label} file {path} is missing or unreadable")
            if os.path.islink(path):
                raise JobError(f"{label} file {path} is a symlink; refusing to follow it")

    def parse_files(self) -> None:
        """Step 3: info is Brewtus's JSON; metadata comes from the client and
        may hold invalid UTF-8, which is dropped."""
        for label in ("info", "metadata"):
            with open(self.files[label]["ifile"], "rb") as stream:
                text = stream.read().decode("utf-8", errors="ignore")
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise JobError(f"{label} file is not valid JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise JobError(f"{label} file does not hold a JSON object")
            self.data[label] = parsed

    def name_media(self) -> None:
        """Step 4: the client's file name and the title derived from it."""
        self.data["client_filename"] = client_filename(self.data["metadata"], self.upload.path)
        self.data["title"] = title_from(self.data["metadata"])

    def hash_main(self) -> None:
        """Step 5: the MD5 that identifies a re-upload of the same video."""
        self.data["unique_hash"] = md5_of(self.upload.path, self.backends.cancel)

    def check_duplicates(self) -> Stop | None:
        """Step 6: the user, and what to do if they already have this video.

        Whatever it decides, it ends its transaction, so no lock is held on
        the shared database while the job uploads."""
        outcome = self._duplicate_outcome()
        self.orm.commit()
        return outcome

    def _duplicate_outcome(self) -> Stop | None:
        uid = self.data["info"].get("uid")
        users = self.orm.scalars(select(User).where(User.uuid == uid)).all()
        if len(users) != 1:
            raise JobError(f"no single user with uuid {uid!r} (found {len(users)})")
        self.user = users[0]
        if self.orm.scalars(select(Media).where(Media.uuid == self.uuid)).one_or_none() is not None:
            # An earlier attempt of this job got past store_db: whatever was
            # uploaded since, this upload is the one that row belongs to.
            return None
        matches = self.orm.scalars(
            select(Media).where(Media.user_id == self.user.id, Media.unique_hash == self.data["unique_hash"])
        ).all()
        if not matches:
            return None
        if len(matches) > 1:
            self.popeye_log.info("%s: %d media of this user share its hash", self.uuid, len(matches))
            return Stop.DUPLICATE
        existing = matches[0]
        if existing.status in ("visible", "complete"):
            self.send_notice(EXISTING_TEMPLATE, existing, self._poster_uri(existing))
            existing.created_date = utcnow()
            return Stop.DUPLICATE
        if existing.status == "failed":
            self._forget_failed(existing)
            return None
        if existing.status == "pending":
            self.send_notice(PENDING_TEMPLATE, existing, None)
        return Stop.DUPLICATE

    def read_flags(self) -> None:
        """Step 7."""
        skip_faces, try_photos, album_uuid = flags_from(self.data["metadata"])
        self.data.update(skip_faces=skip_faces, try_photos=try_photos, album_uuid=album_uuid)

    def store_s3(self) -> None:
        """Step 8: every label with a key and an existing file."""
        files = [e for e in self.files.values() if e["key"] and e["ofile"] and os.path.exists(e["ofile"])]
        total = sum(os.path.getsize(e["ofile"]) for e in files)
        progress = Progress(self.backends, self.uuid, total)
        for entry in files:
            self.backends.store.put(entry["key"], entry["ofile"], progress)
        self.event("070_store_s3_completed")

    def store_db(self) -> None:
        """Step 9: media, workflow stage and original asset in one transaction,
        plus the album link when the user may add to that album."""
        media = self.orm.scalars(select(Media).where(Media.uuid == self.uuid)).one_or_none()
        if media is not None:
            asset = self.orm.scalars(
                select(MediaAsset).where(MediaAsset.media_id == media.id, MediaAsset.asset_type == "original")
            ).one()
            self.popeye_log.info("%s: rows exist from an earlier attempt; keeping them", self.uuid)
            self.data["original_uuid"] = asset.uuid
            self.data["workflow_ran"] = media.status != "pending"
            self.event("080_store_db_completed")
            return
        main = self.files["main"]
        media = Media(
            uuid=self.uuid,
            media_type="original",
            filename=self.data["client_filename"],
            title=self.data["title"],
            view_count=0,
            status="pending",
            skip_faces=self.data["skip_faces"],
            unique_hash=self.data["unique_hash"],
            user_id=self.user.id,
        )
        self.orm.add(media)
        self.orm.flush()
        self.data["original_uuid"] = str(uuid4())
        self.orm.add_all(
            [
                MediaWorkflowStage(media_id=media.id, user_id=self.user.id, workflow_stage="PopeyeComplete"),
                MediaAsset(
                    uuid=self.data["original_uuid"],
                    media_id=media.id,
                    user_id=self.user.id,
                    asset_type="original",
                    metadata_uri=self.files["metadata"]["key"],
                    bytes=os.path.getsize(main["ofile"]),
                    uri=main["key"],
                    location="us",
                    view_count=0,
                ),
            ]
        )
        if self.data["album_uuid"]:
            self._add_to_album(media, self.data["album_uuid"])
        self.orm.commit()
        self.event("080_store_db_completed")

    def start_workflow(self) -> None:
        """Step 10: the workflowId is the media uuid, so a second start is refused
        by the service and counts as started."""
        if self.data.get("workflow_ran"):
            # The workflow moves the media past "pending"; SWF would only
            # refuse a second start while the first is still open.
            self.popeye_log.info("%s: the workflow already ran for this media; not starting it again", self.uuid)
            self.event("090_new_pipeline_callout")
            return
        document = workflow_input(
            media_uuid=self.uuid,
            user_uuid=self.data["info"]["uid"],
            original_uuid=self.data["original_uuid"],
            skip_faces=self.data["skip_faces"],
            try_photos=self.data["try_photos"],
            bucket=self.backends.bucket,
        )
        if not self.backends.workflow.start(self.uuid, document):
            self.popeye_log.info("%s: workflow already started", self.uuid)
        self.event("090_new_pipeline_callout")

    def clean_up(self, outcome: str = DONE) -> None:
        """Step 11: the upload is safe; remove its files and the lock."""
        self.popeye_log.info("%s: %s", self.uuid, outcome)
        logs.close_job_logger(self.popeye_log)
        for path in self._existing_files():
            os.unlink(path)
        self._release_lock()
        self._ended(outcome)

    # -- failure -----------------------------------------------------------

    def handle_error(self, failure) -> None:
        """The errback of every job: log the uuid, step and cause, move each
        existing file of the job into ``errors/`` beside it, release the lock.

        A job interrupted by a shutdown keeps its files and goes back to the
        journal's queue instead.
        """
        if failure.check(Interrupted):
            self.popeye_log.info("%s: interrupted at step %s; queued for the next start", self.uuid, self.step)
            logs.close_job_logger(self.popeye_log)
            self._release_lock()
            self._ended(INTERRUPTED)
            return
        cause = failure.getErrorMessage() or failure.type.__name__
        self.popeye_log.error("%s: failed at step %s: %s", self.uuid, self.step, cause)
        self.popeye_log.debug("%s", failure.getTraceback())
        logs.close_job_logger(self.popeye_log)
        if self._lock_fd is None:
            self.log.warning("%s: files left in place: this job never held the lock", self.uuid)
        else:
            for path in self._existing_files():
                _move_to_errors(path)
            self._release_lock()
        self._ended(FAILED, f"{self.step}: {cause}")

    # -- helpers -------------------------------------------------------------

    def event(self, name: str) -> None:
        """The legacy instrumentation events: a log line and a counter each."""
        self.popeye_log.info("%s: event %s", self.uuid, name)
        self.backends.metrics.events.labels(name).inc()

    def send_notice(self, template: str, existing: Media, poster_uri: str | None) -> None:
        message = duplicate_notice(
            email=self.user.email,
            displayname=self.user.displayname,
            template=template,
            media_uuid=existing.uuid,
            title=existing.title,
            poster_uri=poster_uri,
            filename=self.data["client_filename"],
        )
        try:
            self.backends.notifier.send(message)
        except Exception as exc:
            self.popeye_log.warning("%s: duplicate notice not sent: %s", self.uuid, exc)

    def _poster_uri(self, media: Media) -> str | None:
        return self.orm.scalars(
            select(MediaAsset.uri).where(MediaAsset.media_id == media.id, MediaAsset.asset_type == "poster")
        ).first()

    def _forget_failed(self, media: Media) -> None:
        """An earlier failed processing of the same video: delete its objects
        and rows so this upload takes its place."""
        uris = self.orm.scalars(select(MediaAsset.uri).where(MediaAsset.media_id == media.id)).all()
        for uri in uris:
            if uri:
                self.backends.store.delete(uri)
        for model, column in (
            (MediaAsset, MediaAsset.media_id),
            (MediaWorkflowStage, MediaWorkflowStage.media_id),
            (MediaAlbum, MediaAlbum.media_id),
        ):
            self.orm.execute(delete(model).where(column == media.id))
        self.orm.delete(media)
        self.popeye_log.info("%s: replacing failed media %s", self.uuid, media.uuid)

    def _add_to_album(self, media: Media, album_uuid: str) -> None:
        albums = self.orm.scalars(select(Media).where(Media.uuid == album_uuid)).all()
        if len(albums) == 1 and self._may_add_to(albums[0]):
            self.orm.add(MediaAlbum(album_id=albums[0].id, media_id=media.id))
        else:
            self.popeye_log.warning("%s: not added to album %s: no such album or not permitted", self.uuid, album_uuid)

    def _may_add_to(self, album: Media) -> bool:
        """The user owns the album, or is a member of a community sharing it."""
        if album.user_id == self.user.id:
            return True
        shared = self.orm.scalar(
            select(func.count())
            .select_from(Community)
            .join(ContactGroup, ContactGroup.group_id == Community.members_id)
            .join(Contact, Contact.id == ContactGroup.contact_id)
            .where(Community.media_id == album.id, Contact.contact_email == self.user.email)
        )
        return bool(shared)

    def _existing_files(self) -> list[str]:
        paths = {p for entry in self.files.values() for p in (entry["ifile"], entry["ofile"]) if p}
        return sorted(p for p in paths if os.path.exists(p))

    def _release_lock(self) -> None:
        """Remove the lock file, then release: a job that opens the file in
        between sees a different inode in ``take_lock`` and tries again."""
        if self._lock_fd is None:
            return
        try:
            os.unlink(self.upload.lock_path)
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
