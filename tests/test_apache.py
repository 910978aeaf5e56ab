"""Popeye served by a real Apache httpd with mod_wsgi.

The server runs the shipped ``etc/apache/popeye.wsgi`` in a daemon process
group named ``staging``, as the production vhost does for ``prod``; see
:mod:`tests.apache` for how it is set up and when these tests are skipped.
"""

import json
import os
import urllib.error
import urllib.request

from twisted.trial.unittest import TestCase

from popeye.config import load_settings
from popeye.database import open_database
from tests.apache import CHECKOUT, ApacheServer, local_config
from tests.support import BO, FIXTURES, UNICODE_UPLOAD, copy_upload, seed_users, wait_until


def get_json(testcase, server, path):
    """GET ``path`` -> (status, decoded JSON body); anything else fails
    the test with Apache's error log, where the app's traceback is."""
    try:
        with urllib.request.urlopen(server.url(path), timeout=30) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        testcase.fail(f"GET {path}: {error}\n{server.error_log()}")
    try:
        return status, json.loads(body)
    except ValueError:
        testcase.fail(f"GET {path}: {status} {body[:500]!r}\n{server.error_log()}")


class ApacheModWSGITests(TestCase):
    def setUp(self):
        self.server = ApacheServer(process_group="staging")
        self.addCleanup(self.server.stop)
        home = self.server.home
        self.staging_log = home / "staging.log"
        self.server.write_config("popeye.config", local_config(home))
        self.staging_config = self.server.write_config(
            "staging.config", f'logfile: "{self.staging_log}"\n'
        )
        self.server.start()

    def get_json(self, path):
        return get_json(self, self.server, path)

    def test_ping_echoes_the_query_string(self):
        self.assertEqual(self.get_json("/dev/ping?a=1"), (200, {"a": "1"}))

    def test_process_group_selects_the_staging_overlay(self):
        self.get_json("/dev/ping")
        self.assertTrue(self.staging_log.exists(), self.server.error_log())
        log = self.staging_log.read_text(encoding="utf-8")
        self.assertIn("deployment staging", log)
        self.assertIn(str(self.staging_config), log)
        base_log = self.server.home / "var" / "log" / "popeye.log"
        self.assertFalse(base_log.exists(), "the overlay's logfile should replace the base one")

    def test_process_without_path_is_refused(self):
        self.assertEqual(
            self.get_json("/processor/process"),
            (200, {"error": True, "message": "Missing path param"}),
        )


class ApacheJobTests(TestCase):
    """A job submitted through mod_wsgi runs to the end: the reactor and the
    job runner live in a thread of the daemon process."""

    def setUp(self):
        self.server = ApacheServer(process_group="staging")
        self.addCleanup(self.server.stop)
        var = self.server.home / "var"
        self.server.write_config("popeye.config", local_config(self.server.home))
        self.server.write_config("staging.config", 'VPWSuffix: "Staging"\n')
        settings = load_settings(str(self.server.home / "etc"), "staging")
        seed_users(open_database(settings))
        self.path = copy_upload(UNICODE_UPLOAD, str(var / "uploads"))
        self.server.start()

    def test_job_submitted_through_mod_wsgi_completes(self):
        reply = get_json(self, self.server, f"/processor/process?path={self.path}&skip_faces=&try_photos=")
        self.assertEqual(reply[0], 200, self.server.error_log())
        self.assertEqual(reply[1]["job"], "queued")
        var = self.server.home / "var"
        wait_until(lambda: not os.path.exists(self.path), 30, "the job to finish")
        u = UNICODE_UPLOAD
        self.assertEqual((var / "storage" / u / u).read_bytes(), (FIXTURES / u).read_bytes(), self.server.error_log())
        request = json.loads((var / "workflows" / f"{u}.json").read_text())
        self.assertEqual(request["workflowType"]["name"], "VideoProcessingStaging")
        self.assertEqual(json.loads(request["input"])["user_uuid"], BO)
        self.assertFalse((var / "uploads" / "errors").exists(), self.server.error_log())



    def test_shipped_vhost_is_valid_apache_config(self):
        server = ApacheServer()
        self.addCleanup(server.stop)
        result = server.check_config(CHECKOUT / "etc" / "apache" / "popeye.conf")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
