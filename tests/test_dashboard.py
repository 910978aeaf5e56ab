"""``/dashboard`` in a real headless browser (Debian's chromium), and its
retry button's route."""

import os
import shutil
import subprocess
import urllib.error
import urllib.request

from twisted.trial.unittest import TestCase

from popeye.config import load_settings
from popeye.database import open_database
from tests.support import (
    UNICODE_UPLOAD,
    UNKNOWN_USER_UPLOAD,
    TwistdServer,
    copy_upload,
    embedded_config,
    seed_users,
    unavailable,
    wait_until,
    write_config,
)

CHROMIUM = "/usr/bin/chromium"
#: As this machine's probe runs it: no sandbox as root, no network besides ours.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class DashboardTests(TestCase):
    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.config = embedded_config(self.work)
        self.upload_dir = self.config["upload_dir"]
        config_dir = write_config(os.path.join(self.work, "etc"), self.config)
        self.db = open_database(load_settings(config_dir, ""))
        seed_users(self.db)
        self.server = TwistdServer(self.work, config_dir).start(self)
        for file_id, state in ((UNICODE_UPLOAD, "done"), (UNKNOWN_USER_UPLOAD, "failed")):
            path = copy_upload(file_id, self.upload_dir)
            self.server.get_json(f"/processor/process?path={path}")
            wait_until(lambda: self.server.get_json(f"/processor/status?uuid={file_id}")[1].get("state") == state,
                       30, f"{file_id} {state}")

    def browser(self, *args: str) -> subprocess.CompletedProcess:
        if not os.access(CHROMIUM, os.X_OK):
            raise unavailable("POPEYE_REQUIRE_BROWSER", f"no {CHROMIUM} (apt-get install chromium)")
        profile = os.path.join(self.work, "chromium-profile")
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)

    def test_the_page_shows_health_queue_jobs_and_a_retry_button_for_failures(self):
        dom = self.browser("--dump-dom", self.server.url + "/dashboard").stdout
        self.assertIn('<span class="ready">ready</span>', dom)
        self.assertIn('id="queue">queued: 0', dom)
        self.assertIn(f"<code>{UNICODE_UPLOAD}</code>", dom)
        self.assertIn('data-state="done"', dom)
        failed_row = dom[dom.index('data-state="failed"'):]
        failed_row = failed_row[:failed_row.index("</tr>")]
        self.assertIn(UNKNOWN_USER_UPLOAD, failed_row)
        self.assertIn("check_duplicates: no single user with uuid", failed_row)
        self.assertIn(f'action="/processor/retry?uuid={UNKNOWN_USER_UPLOAD}&amp;next=dashboard"', failed_row)
        self.assertIn("<button>retry</button>", failed_row)
        self.assertIn('http-equiv="refresh"', dom)

    def test_a_screenshot_of_the_page(self):
        png = os.path.join(self.work, "dashboard.png")
        self.browser(f"--screenshot={png}", "--window-size=1280,600", self.server.url + "/dashboard")
        with open(png, "rb") as f:
            picture = f.read()
        self.assertEqual(picture[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(picture), 10_000)
        if os.environ.get("POPEYE_DASHBOARD_SCREENSHOT"):  # to refresh docs/dashboard.png
            shutil.copyfile(png, os.environ["POPEYE_DASHBOARD_SCREENSHOT"])

    def test_retry_moves_the_files_back_and_the_job_runs_again(self):
        from popeye.models import User

        with self.db() as session, session.begin():  # the cause of the failure, fixed
            session.add(User(uuid="unknown", email="unknown@example.com"))
        request = urllib.request.Request(
            self.server.url + f"/processor/retry?uuid={UNKNOWN_USER_UPLOAD}&next=dashboard", method="POST"
        )
        opener = urllib.request.build_opener(NoRedirect)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            opener.open(request, timeout=10)
        self.assertEqual((caught.exception.code, caught.exception.headers["Location"]), (303, "/dashboard"))
        wait_until(lambda: self.server.get_json(f"/processor/status?uuid={UNKNOWN_USER_UPLOAD}")[1]["state"] == "done",
                   30, "the retried job")
        self.assertEqual(os.listdir(os.path.join(self.upload_dir, "errors")), [])

    def test_retry_is_post_only_same_origin_and_refuses_what_is_not_in_errors(self):
        status, headers, _body = self.server.get(f"/processor/retry?uuid={UNKNOWN_USER_UPLOAD}")
        self.assertEqual((status, headers["Allow"]), (405, "POST"))
        cross_site = urllib.request.Request(self.server.url + f"/processor/retry?uuid={UNKNOWN_USER_UPLOAD}",
                                            method="POST", headers={"Origin": "http://evil.example"})
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(cross_site, timeout=10)
        self.assertEqual(caught.exception.code, 403)
        self.assertIn(UNKNOWN_USER_UPLOAD, os.listdir(os.path.join(self.upload_dir, "errors")))
        request = urllib.request.Request(self.server.url + "/processor/retry?uuid=nothing", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 404)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
