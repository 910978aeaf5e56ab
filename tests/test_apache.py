"""Popeye served by a real Apache httpd with mod_wsgi.

The server runs the shipped ``etc/apache/popeye.wsgi`` in a daemon process
group named ``staging``, as the production vhost does for ``prod``; see
:mod:`tests.apache` for how it is set up and when these tests are skipped.
"""

import json
import urllib.error
import urllib.request

from twisted.trial.unittest import TestCase

from tests.apache import CHECKOUT, ApacheServer, local_config


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
        """GET ``path`` -> (status, decoded JSON body); anything else fails
        the test with Apache's error log, where the app's traceback is."""
        try:
            with urllib.request.urlopen(self.server.url(path), timeout=30) as reply:
                status, body = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except OSError as error:
            self.fail(f"GET {path}: {error}\n{self.server.error_log()}")
        try:
            return status, json.loads(body)
        except ValueError:
            self.fail(f"GET {path}: {status} {body[:500]!r}\n{self.server.error_log()}")

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


class ShippedVhostTests(TestCase):
    def test_shipped_vhost_is_valid_apache_config(self):
        server = ApacheServer()
        self.addCleanup(server.stop)
        result = server.check_config(CHECKOUT / "etc" / "apache" / "popeye.conf")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
