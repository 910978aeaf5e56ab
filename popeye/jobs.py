"""The job runner: Worker jobs on a bounded Twisted thread pool.

Every job is first written to the journal (:mod:`popeye.journal`), then run
as ``deferToThreadPool(reactor, pool, worker.execute)`` whose errback calls
``worker.handle_error`` (on the pool too: it moves files and writes the
journal, which must not stall the reactor); a last errback logs anything
that even ``handle_error`` raised, so no job dies silently.

The runner keeps its own queue and hands the pool at most ``worker_threads``
jobs at a time, so that on stop the jobs not yet started simply stay queued
in the journal.  At start it resumes the journal's unfinished jobs, and a
sweeper queues finished uploads that were never notified.  The runner's
state is touched only on the reactor thread.
"""

import logging
import threading
import time
from collections import deque

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from popeye import notify, storage, workflow
from popeye.config import Settings
from popeye.journal import ACTIVE, BUSY, QUEUED, Journal, QueueFull
from popeye.metrics import Metrics
from popeye.sweeper import finished_uploads
from popeye.uploads import Upload
from popeye.worker import Backends, Worker

log = logging.getLogger("popeye.jobs")

#: Finished jobs are kept in the journal this long, for status and audits.
JOURNAL_KEEP_SECONDS = 30 * 24 * 3600


class Unavailable(Exception):
    """No job can be accepted now (queue full, or the runner is stopping)."""


def backends_for(settings: Settings, journal: Journal, metrics: Metrics, cancel: threading.Event) -> Backends:
    """What jobs talk to, built from the settings (clients are made here,
    when the runner starts, never at import)."""
    return Backends(
        store=storage.from_settings(settings),
        workflow=workflow.from_settings(settings),
        notifier=notify.from_settings(settings),
        bucket=settings.bucket_name,
        journal=journal,
        metrics=metrics,
        retry_budget=settings.retry_budget,
        cancel=cancel,
    )


def run_one(settings: Settings, session_factory, journal: Journal, upload: Upload) -> str:
    """One job in the calling thread, as the runner runs it (``execute``, and
    ``handle_error`` on failure), for ``popeye-admin process``.  The upload
    must have been admitted to the journal; returns its final state."""
    worker = Worker(
        session_factory,
        log,
        {"full_filename": upload.path},
        backends_for(settings, journal, Metrics(), threading.Event()),
    )
    try:
        worker.execute()
    except Exception:
        worker.handle_error(Failure())
    return journal.get(upload.uuid)["state"]


class JobRunner(Service):
    """Runs at most ``worker_threads`` jobs at once and holds at most
    ``queue_limit`` more; one upload is never queued twice at the same time."""

    name = "jobs"

    def __init__(self, settings: Settings, session_factory, journal: Journal, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.session_factory = session_factory
        self.journal = journal
        self.reactor = reactor
        self.cancel = threading.Event()
        self.pool: ThreadPool | None = None
        self.backends: Backends | None = None
        self.queue: deque[tuple[str, str]] = deque()  # (uuid, path) not yet handed to the pool
        self.active: dict[str, Worker] = {}  # handed to the pool
        self.accepting = False
        self.metrics = Metrics()
        self.metrics.queue_depth.set_function(lambda: len(self.queue))
        self.metrics.running.set_function(lambda: len(self.active))
        self._waiters: dict[str, list[Deferred]] = {}
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = reactor

    @property
    def capacity(self) -> int:
        return self.settings.worker_threads + self.settings.queue_limit

    def startService(self) -> None:
        super().startService()
        self.cancel.clear()
        self.backends = backends_for(self.settings, self.journal, self.metrics, self.cancel)
        self.pool = ThreadPool(minthreads=0, maxthreads=self.settings.worker_threads, name="popeye-jobs")
        self.pool.start()
        self.accepting = True
        resumed = self.journal.unfinished()
        for entry in resumed:
            self._enqueue(entry["uuid"], entry["path"])
        if resumed:
            log.info("resumed %d unfinished job(s) from the journal", len(resumed))
        if self.settings.sweep_interval > 0:
            self._sweeper.start(self.settings.sweep_interval, now=True)

    def stopService(self) -> Deferred:
        """Stop taking jobs; let running jobs finish for ``shutdown_grace``
        seconds, then interrupt them (they go back to the journal's queue);
        queued jobs stay queued for the next start."""
        super().stopService()
        if self.pool is None:
            return succeed(None)  # already stopped
        self.accepting = False
        if self._sweeper.running:
            self._sweeper.stop()
        left = len(self.queue)
        self.queue.clear()
        if left:
            log.info("stopping: %d queued job(s) stay in the journal for the next start", left)
        interrupt = self.reactor.callLater(self.settings.shutdown_grace, self._interrupt)
        running = DeferredList([self.wait(uuid) for uuid in list(self.active)])

        def stop_pool(_):
            if interrupt.active():
                interrupt.cancel()
            pool, self.pool = self.pool, None
            return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), pool.stop)

        return running.addCallback(stop_pool)

    def _interrupt(self) -> None:
        log.warning("shutdown grace over: interrupting %d running job(s)", len(self.active))
        self.cancel.set()

    def submit(self, upload: Upload) -> str:
        """Record ``upload`` in the journal and queue it; says what happened.

        Safe from any thread: the journal write happens in the caller's
        thread (a request thread, so the reactor never waits on the disk)
        and the job is handed to the reactor afterwards.
        """
        if not self.accepting:
            raise Unavailable("Popeye is not accepting jobs now (stopping)")
        try:
            state, admitted = self.journal.admit(upload.uuid, upload.path, self.capacity)
        except QueueFull as full:
            raise Unavailable(str(full)) from None
        if not admitted:
            return f"already {state}"
        self.reactor.callFromThread(self._enqueue, upload.uuid, upload.path)
        return state

    def wait(self, uuid: str) -> Deferred:
        """Fires once the job for ``uuid`` has ended or been put back in the
        queue by a shutdown (at once if it is not queued or running)."""
        entry = self.journal.get(uuid)
        if uuid not in self.active and (entry is None or entry["state"] not in ACTIVE):
            return succeed(None)
        waiter = Deferred()
        self._waiters.setdefault(uuid, []).append(waiter)
        return waiter

    def sweep(self) -> Deferred:
        """Queue finished uploads the journal does not know (missed
        notifications) or left ``busy`` (another process held them), and
        pick up journal entries queued while no runner held them.

        A failing sweep is logged and the next one runs as planned.
        """
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._sweep)
        d.addCallback(self._adopt)
        d.addErrback(lambda failure: log.error("sweep failed: %s", failure.getTraceback()))
        return d

    def _sweep(self) -> list[dict]:
        for upload in finished_uploads(self.settings.upload_dir, self.settings.sweep_age):
            entry = self.journal.get(upload.uuid)
            if entry is not None and entry["state"] != BUSY:
                continue
            try:
                state = self.submit(upload)
            except Unavailable as refusal:
                log.info("sweeper: %s waits for the next sweep: %s", upload.uuid, refusal)
                break
            log.warning("sweeper: %s was %s; %s", upload.uuid, "never notified" if entry is None else "busy", state)
        self.journal.prune(time.time() - JOURNAL_KEEP_SECONDS)
        return [e for e in self.journal.unfinished() if e["state"] == QUEUED]

    def _adopt(self, queued: list[dict]) -> None:
        """Queue the journal's queued entries that no runner holds (left by a
        process that stopped, or by ``popeye-admin`` while this one ran).
        ``running`` entries belong to whoever runs them; each is checked
        again here, since it may have ended since the sweep read it."""
        for entry in queued:
            current = self.journal.get(entry["uuid"])
            if current is not None and current["state"] == QUEUED:
                self._enqueue(entry["uuid"], entry["path"])

    def _enqueue(self, uuid: str, path: str) -> None:
        if uuid in self.active or any(queued == uuid for queued, _ in self.queue):
            return
        self.queue.append((uuid, path))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.accepting and self.queue and len(self.active) < self.settings.worker_threads:
            uuid, path = self.queue.popleft()
            worker = Worker(self.session_factory, log, {"full_filename": path}, self.backends)
            self.active[uuid] = worker
            d = deferToThreadPool(self.reactor, self.pool, worker.execute)
            d.addErrback(lambda failure, w=worker: deferToThreadPool(self.reactor, self.pool, w.handle_error, failure))
            d.addErrback(self._unhandled, worker)
            d.addBoth(self._finished, worker)

    def _unhandled(self, failure, worker: Worker) -> None:
        log.error("%s: handle_error failed at step %s: %s", worker.uuid, worker.step, failure.getTraceback())

    def _finished(self, _result, worker: Worker) -> None:
        self.active.pop(worker.uuid, None)
        for waiter in self._waiters.pop(worker.uuid, []):
            waiter.callback(None)
        self._dispatch()
