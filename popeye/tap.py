"""``twistd popeye``: Options and makeService.

The WSGI thread pool and the job runner are Twisted services, so their
threads start in ``startService`` (after twistd daemonizes) and stop in
``stopService``.  On stop the port closes first, then running jobs end, then
the request threads.
"""

import logging
import os

from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.threads import deferToThreadPool
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from popeye import logs
from popeye.config import ConfigError, load_settings
from popeye.web.container import PopeyeSite, WSGIContainer
from popeye.wsgi import build


class Options(usage.Options):
    optParameters = [
        ["listen", "l", None, "Twisted endpoint to serve on [default: the 'listen' key]"],
        ["config-dir", "c", None, "Directory of popeye.config and its overlays [default: ./etc, else the packaged copy]"],
        ["deployment", "d", None, "Overlay to read (prod, staging, local) [default: $DEPLOYMENT]"],
        ["threads", "t", os.cpu_count() or 2, "Threads serving HTTP requests [default: one per core]", int],
    ]


class ThreadPoolService(Service):
    """Starts a thread pool with the service and stops it off the reactor
    thread, since its threads may be waiting on the reactor."""

    def __init__(self, pool: ThreadPool, reactor):
        self.pool = pool
        self.reactor = reactor

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.pool.stop)


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    try:
        settings = load_settings(options["config-dir"], options["deployment"])
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    logs.configure(settings.logfile, settings.loglevel, logs.TwistedLogHandler(), settings.log_format)
    app, runner = build(settings, reactor)

    root = MultiService()
    pool = ThreadPool(minthreads=1, maxthreads=options["threads"], name="popeye-wsgi")
    ThreadPoolService(pool, reactor).setServiceParent(root)
    runner.setServiceParent(root)
    site = PopeyeSite(WSGIContainer(reactor, pool, app, app.runs_inline), settings.access_log)
    strports.service(options["listen"] or settings.listen, site).setServiceParent(root)
    logging.getLogger("popeye").info("Popeye will listen on %s", options["listen"] or settings.listen)
    return root
