"""The job runner: Worker jobs on a bounded Twisted thread pool.

Each job is ``deferToThreadPool(reactor, pool, worker.execute)`` whose
errback is ``worker.handle_error``; a last errback logs anything that even
``handle_error`` raised, so no job dies silently.  The runner's state is only
touched on the reactor thread; request threads reach it through
:meth:`JobRunner.submit_from_thread`.
"""

import logging

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.python.threadpool import ThreadPool

from popeye import notify, storage, workflow
from popeye.config import Settings
from popeye.uploads import Upload
from popeye.worker import Backends, Worker

log = logging.getLogger("popeye.jobs")


class Unavailable(Exception):
    """No job can be accepted now (queue full, or the runner is stopping)."""


def backends_from_settings(settings: Settings) -> Backends:
    return Backends(
        store=storage.from_settings(settings),
        workflow=workflow.from_settings(settings),
        notifier=notify.from_settings(settings),
        bucket=settings.bucket_name,
    )


class JobRunner(Service):
    """Runs at most ``worker_threads`` jobs at once and holds at most
    ``queue_limit`` more; one upload is never queued twice at the same time."""

    name = "jobs"

    def __init__(self, settings: Settings, session_factory, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.session_factory = session_factory
        self.reactor = reactor
        self.pool: ThreadPool | None = None
        self.backends: Backends | None = None
        self.jobs: dict[str, str] = {}  # uuid -> "queued" | "running"
        self._waiters: dict[str, list[Deferred]] = {}

    @property
    def capacity(self) -> int:
        return self.settings.worker_threads + self.settings.queue_limit

    def startService(self) -> None:
        super().startService()
        self.backends = backends_from_settings(self.settings)
        self.pool = ThreadPool(minthreads=0, maxthreads=self.settings.worker_threads, name="popeye-jobs")
        self.pool.start()

    def stopService(self):
        """Stop taking jobs and wait, off the reactor thread, for the pool's
        jobs to end, so their callbacks still run before the reactor stops."""
        super().stopService()
        pool, self.pool = self.pool, None
        if pool is not None:
            return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), pool.stop)
        return None

    def submit(self, upload: Upload) -> str:
        """Queue a job for ``upload`` (reactor thread only); says what happened."""
        if self.pool is None:
            raise Unavailable("Popeye is not accepting jobs now (stopping)")
        state = self.jobs.get(upload.uuid)
        if state is not None:
            return f"already {state}"
        if len(self.jobs) >= self.capacity:
            raise Unavailable(f"Job queue is full ({self.capacity} jobs); try again later")
        worker = Worker(self.session_factory, log, {"full_filename": upload.path}, self.backends)
        self.jobs[upload.uuid] = "queued"
        d = deferToThreadPool(self.reactor, self.pool, self._execute, worker)
        d.addErrback(worker.handle_error)
        d.addErrback(self._unhandled, worker)
        d.addBoth(self._finished, worker)
        return "queued"

    def submit_from_thread(self, upload: Upload) -> str:
        return blockingCallFromThread(self.reactor, self.submit, upload)

    def _execute(self, worker: Worker) -> None:
        self.reactor.callFromThread(self._mark, worker.uuid, "running")
        worker.execute()

    def _mark(self, uuid: str, state: str) -> None:
        if uuid in self.jobs:
            self.jobs[uuid] = state

    def _unhandled(self, failure, worker: Worker) -> None:
        log.error("%s: handle_error failed at step %s: %s", worker.uuid, worker.step, failure.getTraceback())

    def _finished(self, _result, worker: Worker) -> None:
        self.jobs.pop(worker.uuid, None)
        for waiter in self._waiters.pop(worker.uuid, []):
            waiter.callback(None)

    def wait(self, uuid: str) -> Deferred:
        """Fires once the job for ``uuid`` has ended (at once if none is in flight)."""
        if uuid not in self.jobs:
            return succeed(None)
        waiter = Deferred()
        self._waiters.setdefault(uuid, []).append(waiter)
        return waiter
