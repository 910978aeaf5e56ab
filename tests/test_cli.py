"""``popeye-admin``, run as a subprocess, against a real twistd where it
talks to one."""

import json
import os
import subprocess
import sys
import uuid

from twisted.trial.unittest import TestCase

from tests.support import ROOT, TwistdServer, embedded_config, wait_until, write_config

USER = "0b1c2d3e-0000-4000-8000-00000000c0de"


class CLICase(TestCase):
    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.config = embedded_config(self.work, mp_token="mixpanel-secret", sweep_interval=1, sweep_age=0)
        self.config_dir = write_config(os.path.join(self.work, "etc"), self.config)
        self.video = os.path.join(self.work, "holiday.mp4")
        os.makedirs(self.work, exist_ok=True)
        with open(self.video, "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024))
        self.server = None

    def admin(self, *args: str, expect: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "popeye.cli", "--config-dir", self.config_dir, *args],
            cwd=self.work,
            env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200",
                     AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"),
            capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(done.returncode, expect, done.stdout + done.stderr)
        return done.stdout

    def start(self):
        self.server = TwistdServer(self.work, self.config_dir).start(self)
        return self.server

    def url(self):
        return ["--url", self.server.url]

    def state(self, file_id: str) -> str:
        return json.loads(self.admin("show", file_id))["state"]

    def wait_state(self, file_id: str, state: str) -> None:
        wait_until(lambda: self.state(file_id) == state, 60, f"{file_id} to be {state}", interval=0.3)

    def simulate(self, user: str = USER) -> str:
        out = self.admin("simulate-upload", self.video, "--user", user, "--title", "Été au lac", *self.url())
        return out.split()[1]


class CLITests(CLICase):
    def test_check_config_shows_files_masked_settings_and_backends(self):
        out = self.admin("check-config")
        self.assertIn(os.path.join(self.config_dir, "popeye.config"), out)
        self.assertIn("deployment: (none)", out)
        self.assertNotIn("mixpanel-secret", out)
        self.assertRegex(out, r"mp_token\s+│\s+\*\*\*")
        for name in ("database", "storage", "workflow", "journal", "upload_dir"):
            self.assertRegex(out, rf"{name}\s+ok")

    def test_check_config_fails_naming_an_unreachable_backend(self):
        write_config(self.config_dir, dict(self.config, storage="s3", aws_endpoint_url="http://127.0.0.1:9"))
        out = self.admin("check-config", expect=1)
        self.assertRegex(out, r"storage\s+FAILING\s+EndpointConnectionError")

    def test_add_user_reaches_the_running_service(self):
        self.admin("initdb")
        self.admin("add-user", "cli@example.com", "--uuid", USER, "--name", "Cli")
        self.start()
        self.assertEqual(self.server.get_json("/dev/users"), (200, {"cli@example.com": USER}))

    def test_simulate_upload_makes_a_job_that_completes(self):
        self.admin("add-user", "cli@example.com", "--uuid", USER)
        self.start()
        file_id = self.simulate()
        self.wait_state(file_id, "done")
        spooled = json.load(open(os.path.join(self.config["workflow_spool_dir"], file_id + ".json")))
        self.assertEqual(json.loads(spooled["input"])["user_uuid"], USER)
        self.assertIn(file_id, self.admin("jobs", "--state", "done"))
        status, body = self.server.get_json(f"/processor/status?uuid={file_id}")
        self.assertEqual((status, body["state"], body["progress"]), (200, "done", 100.0))

    def test_reprocess_errors_brings_a_failed_upload_to_done_once_the_cause_is_fixed(self):
        self.admin("initdb")
        self.start()
        file_id = self.simulate()  # the user does not exist yet: the job fails
        self.wait_state(file_id, "failed")
        self.assertTrue(os.path.exists(os.path.join(self.config["upload_dir"], "errors", file_id)))
        self.admin("add-user", "cli@example.com", "--uuid", USER)
        out = self.admin("reprocess-errors", *self.url())
        self.assertIn("1 upload(s) queued again", out)
        self.wait_state(file_id, "done")
        self.assertFalse(os.path.exists(os.path.join(self.config["upload_dir"], "errors", file_id)))

    def test_retry_while_the_service_is_down_waits_in_the_journal(self):
        self.admin("initdb")
        server = self.start()
        file_id = self.simulate()
        self.wait_state(file_id, "failed")
        server.stop()
        self.admin("add-user", "cli@example.com", "--uuid", USER)
        out = self.admin("retry", file_id, "--url", server.url)
        self.assertIn("queued in the journal", out)
        self.start()
        self.wait_state(file_id, "done")

    def test_process_runs_one_job_in_the_foreground(self):
        self.admin("add-user", "cli@example.com", "--uuid", USER)
        from popeye.uploads import write_upload

        file_id = str(uuid.uuid1())
        upload = write_upload(self.config["upload_dir"], file_id, self.video, USER, "clip.mp4")
        out = self.admin("process", upload.path)
        self.assertIn(f"{file_id}: done", out)
        self.assertTrue(os.path.exists(os.path.join(self.config["local_storage_dir"], file_id, file_id)))
        self.assertEqual(self.state(file_id), "done")
