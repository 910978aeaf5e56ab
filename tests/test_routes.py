"""The legacy routes (SPEC section 1) through a real ``twistd popeye``."""

import json
import os
import sqlite3
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from twisted.trial.unittest import TestCase

from tests.support import (
    ALBUM_UPLOAD,
    ANN,
    UNICODE_UPLOAD,
    TwistdServer,
    copy_upload,
    embedded_config,
    wait_until,
    write_config,
)


class RouteTests(TestCase):
    token = ""
    settings: dict = {}

    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.config = embedded_config(self.work, notify_token=self.token, **self.settings)
        self.upload_dir = self.config["upload_dir"]
        os.makedirs(self.upload_dir)
        # Not a real upload for the job to eat: the routes are under test here.
        self.outside = os.path.join(self.work, "outside.txt")
        with open(self.outside, "w") as f:
            f.write("not for upload")
        write_config(os.path.join(self.work, "etc"), self.config)
        self.server = TwistdServer(self.work, os.path.join(self.work, "etc")).start(self)

    def process(self, path, **extra):
        return self.server.get_json("/processor/process?" + urlencode({"path": path, **extra}))

    def assertRefused(self, reply, status, message):
        self.assertEqual(reply, (status, {"error": True, "message": message}))

    def assertUntouched(self):
        self.assertEqual(open(self.outside).read(), "not for upload")
        self.assertEqual(os.listdir(self.upload_dir), [])


class LegacyRouteTests(RouteTests):
    def test_ping_echoes_the_query_as_json(self):
        status, headers, body = self.server.get("/dev/ping?a=1&b=two%20words")
        self.assertEqual((status, headers["Content-Type"]), (200, "application/json"))
        self.assertEqual(body, '{"a": "1", "b": "two words"}')

    def test_error_stdout_logs_a_debug_line_and_echoes_the_query(self):
        self.assertEqual(self.server.get_json("/dev/error/stdout?x=y"), (200, {"x": "y"}))
        with open(self.config["logfile"]) as log:
            self.assertIn("dev/error/stdout called with {'x': 'y'}", log.read())

    def test_error_exception_reports_a_handled_error(self):
        self.assertRefused(self.server.get_json("/dev/error/exception"), 200, "bummer")

    def test_users_maps_emails_to_uuids_in_id_order(self):
        db = sqlite3.connect(os.path.join(self.config["state_dir"], "popeye.db"))
        db.executemany(
            "INSERT INTO users (uuid, email, displayname) VALUES (?, ?, ?)",
            [("u-2", "zed@example.com", "Zed"), ("u-1", "amy@example.com", "Amy")],
        )
        db.commit()
        db.close()
        status, body = self.server.get("/dev/users")[0::2]
        self.assertEqual(status, 200)
        self.assertEqual(body, '{"zed@example.com": "u-2", "amy@example.com": "u-1"}')

    def test_process_without_path_answers_the_legacy_error(self):
        self.assertRefused(self.server.get_json("/processor/process"), 200, "Missing path param")
        self.assertRefused(self.server.get_json("/processor/process?path="), 200, "Missing path param")

    def test_process_accepts_the_exact_brewtus_request_and_answers_at_once(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        status, body = self.server.get_json(f"/processor/process?path={path}&skip_faces=&try_photos=")
        self.assertEqual(status, 200)
        self.assertEqual(body["full_filename"], path)
        self.assertEqual(body["uuid"], UNICODE_UPLOAD)

    def test_unknown_route_is_a_json_404(self):
        self.assertRefused(self.server.get_json("/processor/facebook"), 404, "No route for /processor/facebook")
        self.assertRefused(self.server.get_json("/nowhere"), 404, "No route for /nowhere")

    def test_other_methods_are_refused_with_json(self):
        request = urllib.request.Request(self.server.url + "/dev/ping", data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 405)
        self.assertIn(b'"error": true', caught.exception.read())

    def test_database_failure_is_a_json_500_without_traceback(self):
        os.unlink(os.path.join(self.config["state_dir"], "popeye.db"))
        os.makedirs(os.path.join(self.config["state_dir"], "popeye.db"))  # unopenable now
        status, _headers, body = self.server.get("/dev/users")
        self.assertEqual(status, 500)
        self.assertEqual(body, '{"error": true, "message": "Internal error; see the server log"}')
        self.assertNotIn("Traceback", body)
        with open(self.config["logfile"]) as log:
            self.assertIn("GET /dev/users failed", log.read())


class PathRefusalTests(RouteTests):
    """Every refusal leaves the disk as it was."""

    def test_path_outside_the_upload_directory_is_refused(self):
        self.assertRefused(self.process(self.outside), 403, "path is not inside the upload directory")
        self.assertRefused(self.process("/etc/shadow"), 403, "path is not inside the upload directory")
        self.assertUntouched()

    def test_dot_dot_segments_are_refused(self):
        sneaky = os.path.join(self.upload_dir, "..", "outside.txt")
        self.assertRefused(self.process(sneaky), 400, "path must not contain '..' segments")
        self.assertUntouched()

    def test_symlink_pointing_outside_is_refused(self):
        link = os.path.join(self.upload_dir, "3a7a2f00-0000-4000-8000-000000000000")
        os.symlink(self.outside, link)
        self.assertRefused(self.process(link), 403, "path is not inside the upload directory")
        self.assertTrue(os.path.islink(link))
        self.assertEqual(open(self.outside).read(), "not for upload")

    def test_a_symlinked_alias_of_the_upload_directory_is_inside(self):
        alias = os.path.join(self.work, "brewtus-files")
        os.symlink(self.upload_dir, alias)
        copy_upload(UNICODE_UPLOAD, self.upload_dir)
        status, body = self.process(os.path.join(alias, UNICODE_UPLOAD))
        self.assertEqual((status, body["uuid"]), (200, UNICODE_UPLOAD))

    def test_missing_file_is_refused(self):
        missing = os.path.join(self.upload_dir, "3a7a2f00-0000-4000-8000-000000000000")
        self.assertRefused(self.process(missing), 404, "file not found")
        self.assertUntouched()

    def test_an_upload_still_being_written_is_refused_and_left_alone(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        with open(path + ".json") as f:
            info = json.load(f)
        info["offset"] = 1024
        with open(path + ".json", "w") as f:
            json.dump(info, f)
        before = sorted(os.listdir(self.upload_dir))
        self.assertRefused(self.process(path), 409,
                           "upload is not complete (info offset != finalLength, or no metadata)")
        time.sleep(0.5)
        self.assertEqual(sorted(os.listdir(self.upload_dir)), before)

    def test_relative_path_is_refused(self):
        self.assertRefused(self.process("uploads/x"), 400, "path must be absolute")

    def test_companion_file_is_refused(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        before = sorted(os.listdir(self.upload_dir))
        self.assertRefused(self.process(path + ".json"), 400, "path names a job's companion file, not an upload")
        self.assertEqual(sorted(os.listdir(self.upload_dir)), before)

    def test_oversized_requests_are_refused_with_414(self):
        self.assertRefused(self.process("/" + "a" * 5000), 414, "Request URI too long")
        self.assertRefused(self.server.get_json("/dev/" + "p" * 2000), 414, "Request URI too long")

    def test_nul_byte_is_refused(self):
        self.assertRefused(self.process(self.upload_dir + "/a\x00b"), 400, "path contains a NUL byte")


class TokenTests(RouteTests):
    token = "t0k&n!"

    @property
    def settings(self):
        return {"access_log": os.path.join(self.work, "log", "access.log")}

    def test_the_token_never_reaches_the_access_log(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.assertEqual(self.process(path, token=self.token)[0], 200)
        self.server.stop()  # flushes the access log
        with open(self.settings["access_log"]) as log:
            lines = log.read().splitlines()
        self.assertTrue(any('"GET /processor/process HTTP/1.1" 200' in line for line in lines), lines)
        self.assertFalse(any("t0k" in line or "path=" in line for line in lines), lines)

    def test_missing_or_wrong_token_is_refused(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        before = sorted(os.listdir(self.upload_dir))
        self.assertRefused(self.process(path), 403, "Missing or wrong token")
        self.assertRefused(self.process(path, token="wrong"), 403, "Missing or wrong token")
        self.assertRefused(self.server.get_json("/processor/process"), 403, "Missing or wrong token")
        self.assertEqual(sorted(os.listdir(self.upload_dir)), before)

    def test_token_in_query_or_header_is_accepted(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        status, body = self.process(path, token=self.token)
        self.assertEqual((status, body["full_filename"]), (200, path))
        other = copy_upload(ALBUM_UPLOAD, self.upload_dir)
        status, body = self.server.get_json(
            "/processor/process?path=" + other, headers={"X-Popeye-Token": self.token}
        )
        self.assertEqual(status, 200, body)


class QueueLimitTests(RouteTests):
    settings = {"worker_threads": 1, "queue_limit": 0}

    def test_full_queue_refuses_with_503_and_touches_nothing(self):
        db = sqlite3.connect(os.path.join(self.config["state_dir"], "popeye.db"), isolation_level=None)
        self.addCleanup(db.close)
        db.execute("INSERT INTO users (uuid, email) VALUES (?, ?)", (ANN, "ann@example.com"))
        db.execute("BEGIN IMMEDIATE")  # the running job now waits to write its rows
        first = copy_upload(ALBUM_UPLOAD, self.upload_dir)
        self.assertEqual(self.process(first)[1]["job"], "queued")
        second = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        waiting = sorted(n for n in os.listdir(self.upload_dir) if n.startswith(UNICODE_UPLOAD))
        self.assertRefused(self.process(second), 503, "Job queue is full (1 jobs); try again later")
        self.assertEqual(sorted(n for n in os.listdir(self.upload_dir) if n.startswith(UNICODE_UPLOAD)), waiting)
        db.execute("ROLLBACK")
        wait_until(lambda: not os.path.exists(first), 30, "the first job to finish")
        self.assertEqual(self.process(second)[1]["job"], "queued")
