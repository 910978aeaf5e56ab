"""The WSGI application, for both hosts.

``twistd popeye`` builds it through :func:`build`.  Apache mod_wsgi loads
the module-level ``application`` (``etc/apache/popeye.wsgi`` imports it): it
is built on first access, so importing this module starts nothing; under
Apache a Twisted reactor runs in a thread (crochet) to drive the job runner.
"""

import logging
import os
import sys
import threading

from popeye import logs
from popeye.config import Settings, load_settings
from popeye.health import Health
from popeye.database import open_database
from popeye.jobs import JobRunner
from popeye.journal import Journal
from popeye.web.dashboard import dashboard_app
from popeye.web.dev import dev_app
from popeye.web.ops import ops_app
from popeye.web.processor import processor_app
from popeye.web.routing import Application, WSGIApp

log = logging.getLogger("popeye")


def make_app(settings: Settings, session_factory, runner: JobRunner) -> WSGIApp:
    health = Health(settings, session_factory, runner.journal)
    routes = Application(
        [
            ("/dev", dev_app),
            ("/processor", processor_app(settings, runner)),
            ("", ops_app(settings, runner, health)),
            ("", dashboard_app(settings, runner, health)),
        ]
    )
    return WSGIApp(routes, session_factory)


def build(settings: Settings, reactor) -> tuple[WSGIApp, JobRunner]:
    """The app and its (not yet started) job runner."""
    log.info(
        "Popeye starting: deployment %s, config files %s",
        settings.deployment or "(none)",
        ", ".join(settings.config_files),
    )
    log.debug("settings: %r", settings)
    os.makedirs(settings.upload_dir, exist_ok=True)  # Brewtus's, but the embedded default starts empty
    session_factory = open_database(settings)
    journal = Journal(os.path.join(settings.state_dir, "journal.db"))
    runner = JobRunner(settings, session_factory, journal, reactor)
    return make_app(settings, session_factory, runner), runner


def _application_for_mod_wsgi() -> WSGIApp:
    import crochet
    from twisted.internet.threads import blockingCallFromThread

    settings = load_settings()
    logs.configure(settings.logfile, settings.loglevel, logging.StreamHandler(sys.stderr), settings.log_format)
    crochet.setup()
    from twisted.internet import reactor

    app, runner = build(settings, reactor)

    def start() -> None:
        runner.startService()
        reactor.addSystemEventTrigger("before", "shutdown", runner.stopService)

    blockingCallFromThread(reactor, start)
    return app


_lock = threading.Lock()


def __getattr__(name: str):
    """``application``, built once on first access (PEP 562)."""
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if "application" not in globals():
            globals()["application"] = _application_for_mod_wsgi()
    return globals()["application"]
