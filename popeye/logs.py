"""Logging in the legacy line format, to ``logfile`` and to the host's log.

Under ``twistd`` the lines also go to twistd's log; under Apache they go to
stderr, which mod_wsgi sends to the error log.  Each job also writes its own
``<base>.log`` through a logger named ``popeye.<uuid>``.
"""

import json
import logging
import logging.handlers
import os

LEGACY_FORMAT = (
    "%(name)-22s: %(module)-7s: %(lineno)-3s: %(funcName)-12s: %(asctime)s: %(levelname)-5s: %(message)s"
)

ROOT = "popeye"


def legacy_formatter() -> logging.Formatter:
    return logging.Formatter(LEGACY_FORMAT)


class JSONFormatter(logging.Formatter):
    """One JSON object a line, for log shippers (``log_format: "json"``)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "module": record.module,
            "line": record.lineno,
            "function": record.funcName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


FORMATTERS = {"legacy": legacy_formatter, "json": JSONFormatter}


class TwistedLogHandler(logging.Handler):
    """Hands formatted records to Twisted's log, so ``twistd.log`` has them."""

    def emit(self, record: logging.LogRecord) -> None:
        from twisted.python import log

        try:
            log.msg(self.format(record))
        except Exception:
            self.handleError(record)


def configure(logfile: str, level: int, host_handler: logging.Handler, log_format: str = "legacy") -> logging.Logger:
    """Point the ``popeye`` logger at ``logfile`` and the host's log.

    ``logfile`` is reopened when logrotate moves it away.  Handlers installed
    by an earlier call are replaced, so building the service twice in one
    process (tests) does not double every line.
    """
    logger = logging.getLogger(ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handlers = [host_handler]
    if logfile:
        os.makedirs(os.path.dirname(logfile), exist_ok=True)
        handlers.append(logging.handlers.WatchedFileHandler(logfile, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(FORMATTERS[log_format]())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def job_logger(uuid: str, path: str) -> logging.Logger:
    """``popeye.<uuid>`` writing to ``path`` and, through its parent, to the
    main log.  It is not registered with :mod:`logging`, so the logger of a
    finished job is freed instead of living for the life of the process."""
    logger = logging.Logger(f"{ROOT}.{uuid}")
    logger.parent = logging.getLogger(ROOT)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(legacy_formatter())
    logger.addHandler(handler)
    return logger


def close_job_logger(logger: logging.Logger) -> None:
    """Close the job's file so it can be moved or removed."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
