"""The journal, the transient-error rules and the sweeper, each on its own."""

import os
import threading
import time

import botocore.exceptions
import pymysql.err
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from twisted.trial.unittest import TestCase

from popeye.journal import QueueFull, Journal
from popeye.retry import Interrupted, call_with_retries, is_transient
from popeye.sweeper import finished_uploads
from popeye.uploads import Refused, restore_from_errors, return_to_errors, uploads_in_errors
from tests.support import ANN, UNICODE_UPLOAD, copy_upload, write_brewtus_upload


class JournalTests(TestCase):
    def setUp(self):
        self.journal = Journal(os.path.join(os.path.abspath(self.mktemp()), "journal.db"))

    def test_admit_records_once_and_reports_the_job_in_flight(self):
        self.assertEqual(self.journal.admit("u1", "/up/u1", 10), ("queued", True))
        self.assertEqual(self.journal.admit("u1", "/up/u1", 10), ("queued", False))
        self.journal.started("u1")
        self.assertEqual(self.journal.admit("u1", "/up/u1", 10), ("running", False))
        entry = self.journal.get("u1")
        self.assertEqual((entry["state"], entry["attempts"], entry["path"]), ("running", 1, "/up/u1"))

    def test_admit_refuses_beyond_capacity_and_counts_only_active_jobs(self):
        self.journal.admit("u1", "/up/u1", 2)
        self.journal.admit("u2", "/up/u2", 2)
        with self.assertRaises(QueueFull):
            self.journal.admit("u3", "/up/u3", 2)
        self.journal.finished("u1", "done")
        self.assertEqual(self.journal.admit("u3", "/up/u3", 2), ("queued", True))

    def test_a_finished_job_notified_again_is_queued_again(self):
        self.journal.admit("u1", "/up/u1", 10)
        self.journal.entered("u1", "store_s3")
        self.journal.finished("u1", "failed", "store_s3: NoSuchBucket")
        self.assertEqual(self.journal.admit("u1", "/up/u1", 10), ("queued", True))
        entry = self.journal.get("u1")
        self.assertEqual((entry["state"], entry["step"], entry["last_error"]), ("queued", None, None))

    def test_concurrent_admissions_of_one_upload_admit_it_once(self):
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(self.journal.admit("u1", "/up/u1", 100)))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(sum(admitted for _state, admitted in results), 1)

    def test_unfinished_lists_queued_and_running_oldest_first(self):
        for uuid in ("a", "b", "c"):
            self.journal.admit(uuid, "/up/" + uuid, 10)
        self.journal.started("b")
        self.journal.finished("c", "done")
        self.assertEqual([e["uuid"] for e in self.journal.unfinished()], ["a", "b"])

    def test_prune_forgets_only_old_finished_jobs(self):
        self.journal.admit("old", "/up/old", 10)
        self.journal.finished("old", "done")
        self.journal.admit("active", "/up/active", 10)
        self.assertEqual(self.journal.prune(time.time() + 1), 1)
        self.assertIsNone(self.journal.get("old"))
        self.assertIsNotNone(self.journal.get("active"))

    def test_retries_and_progress_are_recorded(self):
        self.journal.admit("u1", "/up/u1", 10)
        self.journal.retried("u1", "store_s3: EndpointConnectionError")
        self.journal.retried("u1", "store_s3: EndpointConnectionError")
        self.journal.progressed("u1", 10, 40)
        entry = self.journal.get("u1")
        self.assertEqual((entry["retries"], entry["bytes_done"], entry["bytes_total"]), (2, 10, 40))


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


class TransientTests(TestCase):
    def test_throttling_5xx_and_lost_connections_are_transient(self):
        for exc in (
            client_error("SlowDown", 503),
            client_error("ThrottlingException", 400),
            client_error("InternalError", 500),
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
            botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"),
            pymysql.err.OperationalError(2003, "Can't connect"),
            pymysql.err.OperationalError(2013, "Lost connection"),
            SQLAlchemyOperationalError("SELECT 1", {}, pymysql.err.OperationalError(2006, "gone away")),
            ConnectionResetError(),
        ):
            self.assertTrue(is_transient(exc), exc)

    def test_a_wrapped_s3_failure_is_judged_by_its_cause(self):
        def upload_failed(cause):
            try:
                try:
                    raise cause
                except ClientError as exc:  # as boto3's upload_file wraps it, without "from"
                    raise S3UploadFailedError(f"Failed to upload: {exc}")
            except S3UploadFailedError as wrapped:
                return wrapped

        self.assertTrue(is_transient(upload_failed(client_error("SlowDown", 503))))
        self.assertFalse(is_transient(upload_failed(client_error("NoSuchBucket", 404))))

    def test_refusals_and_bugs_are_permanent(self):
        for exc in (
            client_error("NoSuchBucket", 404),
            client_error("AccessDenied", 403),
            client_error("UnknownResourceFault", 400),
            pymysql.err.OperationalError(1045, "Access denied"),
            ValueError("bad"),
            KeyError("uid"),
        ):
            self.assertFalse(is_transient(exc), exc)

    def test_a_step_is_retried_until_it_succeeds_and_each_retry_is_reported(self):
        failures = [ConnectionResetError("reset"), client_error("SlowDown", 503)]
        seen = []

        def step():
            if failures:
                raise failures.pop(0)
            return "stored"

        result = call_with_retries(step, 30, threading.Event(), lambda exc, delay: seen.append(type(exc)))
        self.assertEqual(result, "stored")
        self.assertEqual(seen, [ConnectionResetError, ClientError])

    def test_a_permanent_error_is_not_retried(self):
        calls = []

        def step():
            calls.append(1)
            raise client_error("NoSuchBucket", 404)

        with self.assertRaises(ClientError):
            call_with_retries(step, 30, threading.Event(), lambda *_: None)
        self.assertEqual(len(calls), 1)

    def test_the_budget_ends_the_retries(self):
        attempts = []

        def step():
            attempts.append(1)
            raise ConnectionRefusedError()

        with self.assertRaises(ConnectionRefusedError):
            call_with_retries(step, 0.5, threading.Event(), lambda *_: None)
        self.assertGreater(len(attempts), 1, "retried within the budget, then gave up")

    def test_the_budget_counts_from_the_first_failure_not_from_the_start(self):
        attempts = []

        def long_step():
            attempts.append(1)
            if len(attempts) == 1:
                time.sleep(0.6)  # a long upload, longer than the whole budget, then a reset
                raise ConnectionResetError()
            return "stored"

        self.assertEqual(call_with_retries(long_step, 0.5, threading.Event(), lambda *_: None), "stored")

    def test_stopping_turns_a_transient_failure_into_an_interruption(self):
        cancel = threading.Event()

        def step():
            cancel.set()
            raise ConnectionRefusedError()

        with self.assertRaises(Interrupted):
            call_with_retries(step, 300, cancel, lambda *_: None)


class ErrorsDirectoryTests(TestCase):
    def test_restore_then_return_leaves_a_failed_upload_where_retries_look(self):
        upload_dir = os.path.abspath(self.mktemp())
        path = copy_upload(UNICODE_UPLOAD, os.path.join(upload_dir, "errors"))
        with open(path + ".log", "w") as f:
            f.write("failed at step check_duplicates")
        self.assertEqual(uploads_in_errors(upload_dir), [UNICODE_UPLOAD])
        self.assertEqual(restore_from_errors(upload_dir, UNICODE_UPLOAD), os.path.join(upload_dir, UNICODE_UPLOAD))
        self.assertEqual(uploads_in_errors(upload_dir), [])
        self.assertEqual(len([n for n in os.listdir(upload_dir) if n.startswith(UNICODE_UPLOAD)]), 4)
        return_to_errors(upload_dir, UNICODE_UPLOAD)  # queueing it failed
        self.assertEqual(uploads_in_errors(upload_dir), [UNICODE_UPLOAD])
        self.assertEqual(os.listdir(upload_dir), ["errors"])

    def test_restore_refuses_to_overwrite_and_moves_nothing(self):
        upload_dir = os.path.abspath(self.mktemp())
        copy_upload(UNICODE_UPLOAD, os.path.join(upload_dir, "errors"))
        copy_upload(UNICODE_UPLOAD, upload_dir)
        with self.assertRaises(Refused):
            restore_from_errors(upload_dir, UNICODE_UPLOAD)
        self.assertEqual(uploads_in_errors(upload_dir), [UNICODE_UPLOAD])
        with self.assertRaises(Refused):
            restore_from_errors(upload_dir, "not-there")


class SweeperTests(TestCase):
    def setUp(self):
        self.upload_dir = os.path.abspath(self.mktemp())

    def test_finished_quiet_uploads_are_found(self):
        copy_upload(UNICODE_UPLOAD, self.upload_dir)
        found = [u.uuid for u in finished_uploads(self.upload_dir, min_age=60, now=time.time() + 120)]
        self.assertEqual(found, [UNICODE_UPLOAD])

    def test_young_unfinished_or_incomplete_uploads_are_left_alone(self):
        copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.assertEqual(list(finished_uploads(self.upload_dir, min_age=60)), [], "too young")
        path = write_brewtus_upload(self.upload_dir, "half", b"12345678", ANN)
        with open(path, "ab") as f:
            f.write(b"more bytes than Brewtus announced")
        os.unlink(copy_upload(UNICODE_UPLOAD, self.upload_dir) + "_metadata.json")
        self.assertEqual(list(finished_uploads(self.upload_dir, min_age=0, now=time.time() + 120)), [])

    def test_a_missing_upload_directory_yields_nothing(self):
        self.assertEqual(list(finished_uploads(os.path.join(self.upload_dir, "none"), 0)), [])
