"""Which errors are worth waiting out, and how long a step waits for them.

A few seconds of S3, SWF, SQS or database trouble must not park an upload in
``errors/`` for a person to recover.  botocore already retries each AWS call
a few times (standard mode); a step as a whole is retried here, with
exponential backoff and jitter, until its time budget is spent.  Anything
not listed as transient is permanent and fails the job at once.
"""

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import botocore.exceptions
import pymysql.err
import sqlalchemy.exc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_when_event_set,
    wait_random_exponential,
)
from tenacity.stop import stop_base

T = TypeVar("T")

#: AWS error codes that mean "later", whatever the service.
TRANSIENT_AWS_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
}

#: MySQL client/server errors of a lost, refused or busy connection.
TRANSIENT_MYSQL_CODES = {
    1040,  # too many connections
    1205,  # lock wait timeout
    1213,  # deadlock
    2002,  # can't connect (socket)
    2003,  # can't connect (TCP)
    2006,  # server has gone away
    2013,  # lost connection during query
    2014,  # commands out of sync after a lost connection
}


class Interrupted(Exception):
    """The service is stopping: the job goes back to the queue, files untouched."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in TRANSIENT_AWS_CODES or status >= 500
    if isinstance(
        exc,
        (
            botocore.exceptions.ConnectionError,  # includes EndpointConnectionError and timeouts
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ReadTimeoutError,
        ),
    ):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return is_transient(exc.orig) if exc.orig is not None else False
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in TRANSIENT_MYSQL_CODES or isinstance(exc, pymysql.err.InterfaceError)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return True  # the embedded database, busy beyond its timeout
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    # Wrappers chain the real cause, explicitly (raise ... from) or, as
    # boto3's S3UploadFailedError does, implicitly.
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return cause is not None and is_transient(cause)


class stop_after_failing_for(stop_base):
    """Stop once ``seconds`` have passed since the step's first failure.

    Counting from the first failure rather than the step's start means a
    20 GiB upload that fails after ten minutes still gets its retries.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.first_failure: float | None = None

    def __call__(self, state: RetryCallState) -> bool:
        if self.first_failure is None:
            self.first_failure = state.outcome_timestamp
        return state.outcome_timestamp - self.first_failure >= self.seconds


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def call_with_retries(
    step: Callable[[], T],
    budget: float,
    cancel: threading.Event,
    on_retry: Callable[[BaseException, float], None],
) -> T:
    """Run ``step``; retry it while it fails transiently, within ``budget``
    seconds, and not once ``cancel`` is set.

    A transient failure left when ``cancel`` was set raises
    :class:`Interrupted`; any other failure is raised as it is.
    """

    def before_sleep(state: RetryCallState) -> None:
        on_retry(state.outcome.exception(), state.upcoming_sleep)

    retrying = Retrying(
        stop=stop_after_failing_for(budget) | stop_when_event_set(cancel),
        wait=wait_random_exponential(multiplier=0.5, max=15),
        retry=retry_if_exception(is_transient),
        sleep=cancel.wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(step)
    except Exception as exc:
        if cancel.is_set() and is_transient(exc):
            raise Interrupted(describe(exc)) from exc
        raise
