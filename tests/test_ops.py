"""The operator routes through a real twistd: /health, /metrics,
/processor/status and /processor/jobs."""

import json
import os
import re

from twisted.trial.unittest import TestCase

from popeye.config import load_settings
from popeye.database import open_database
from tests.support import (
    ANN,
    FIXTURES,
    UNICODE_UPLOAD,
    UNKNOWN_USER_UPLOAD,
    MotoServer,
    TwistdServer,
    copy_upload,
    embedded_config,
    seed_users,
    wait_until,
    write_brewtus_upload,
    write_config,
)

MiB = 1024 * 1024
SECRET = "aws-secret-never-shown"


def metric(text: str, name: str, **labels) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class OpsCase(TestCase):
    moto_private = False
    token = ""

    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.moto = MotoServer() if self.moto_private else MotoServer.shared()
        if self.moto_private:
            self.addCleanup(self.moto.stop)
        self.moto.prepare()
        self.config = embedded_config(self.work, awsSecret=SECRET, awsAccess="testing", notify_token=self.token,
                                      **self.moto.aws_config())
        self.upload_dir = self.config["upload_dir"]
        config_dir = write_config(os.path.join(self.work, "etc"), self.config)
        seed_users(open_database(load_settings(config_dir, "")))
        self.server = TwistdServer(self.work, config_dir).start(self)

    def get(self, path):
        separator = "&" if "?" in path else "?"
        return self.server.get(path + (f"{separator}token={self.token}" if self.token else ""))

    def get_json(self, path):
        status, _headers, body = self.get(path)
        return status, json.loads(body)

    def notify(self, file_id):
        path = os.path.join(self.upload_dir, file_id)
        return self.get_json(f"/processor/process?path={path}")

    def run_one_good_one_failing(self):
        """A fixture that ends done and one that fails (its user is unknown)."""
        for file_id, state in ((UNICODE_UPLOAD, "done"), (UNKNOWN_USER_UPLOAD, "failed")):
            copy_upload(file_id, self.upload_dir)
            self.notify(file_id)
            self.wait_state(file_id, state)

    def wait_state(self, file_id, *states):
        return wait_until(lambda: self.get_json(f"/processor/status?uuid={file_id}")[1].get("state") in states,
                          60, f"{file_id} to be {states}")


class MetricsTests(OpsCase):
    def test_metrics_count_jobs_steps_bytes_and_legacy_events(self):
        status, headers, before = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        self.assertEqual(metric(before, "popeye_jobs_total", outcome="done"), 0)
        self.run_one_good_one_failing()
        after = self.get("/metrics")[2]
        self.assertEqual(metric(after, "popeye_jobs_total", outcome="done"), 1)
        self.assertEqual(metric(after, "popeye_jobs_total", outcome="failed"), 1)
        for event in ("070_store_s3_completed", "080_store_db_completed", "090_new_pipeline_callout"):
            self.assertEqual(metric(after, "popeye_events_total", event=event), 1, event)
        stored = sum(os.path.getsize(FIXTURES / (UNICODE_UPLOAD + s)) for s in ("", ".json", "_metadata.json"))
        self.assertEqual(metric(after, "popeye_uploaded_bytes_total"), stored)
        self.assertEqual(metric(after, "popeye_job_duration_seconds_count"), 2)
        self.assertEqual(metric(after, "popeye_step_duration_seconds_count", step="store_s3"), 1)
        self.assertEqual(metric(after, "popeye_queue_depth"), 0)
        self.assertEqual(metric(after, "popeye_jobs_running"), 0)
        self.assertNotIn(SECRET, after)


class StatusTests(OpsCase):
    def test_status_shows_the_bytes_growing_during_a_large_upload(self):
        size = 384 * MiB
        with open(os.path.join(self.work, "big"), "wb") as f:
            for _ in range(size // MiB):
                f.write(os.urandom(MiB))
        write_brewtus_upload(self.upload_dir, "big-upload", b"", ANN, link_from=os.path.join(self.work, "big"))
        self.assertEqual(self.notify("big-upload")[0], 200)
        seen = set()

        def finished():
            view = self.get_json("/processor/status?uuid=big-upload")[1]
            if view["bytes_done"]:
                seen.add(view["bytes_done"])
            return view["state"] == "done" and view

        final = wait_until(finished, 120, "the big upload", interval=0.05)
        self.assertGreaterEqual(len(seen), 2, f"progress seen: {sorted(seen)}")
        self.assertEqual(final["bytes_total"], final["bytes_done"])
        self.assertGreaterEqual(final["bytes_total"], size)
        self.assertEqual(final["progress"], 100.0)
        self.assertEqual((final["step"], final["attempts"], final["retries"]), ("clean_up", 1, 0))
        self.assertRegex(final["finished"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")

    def test_jobs_lists_recent_jobs_by_state(self):
        self.run_one_good_one_failing()
        status, body = self.get_json("/processor/jobs")
        self.assertEqual(sorted(j["uuid"] for j in body["jobs"]), sorted([UNICODE_UPLOAD, UNKNOWN_USER_UPLOAD]))
        failed = self.get_json("/processor/jobs?state=failed&limit=5")[1]["jobs"]
        self.assertEqual([j["uuid"] for j in failed], [UNKNOWN_USER_UPLOAD])
        self.assertTrue(failed[0]["last_error"].startswith("check_duplicates: "))
        self.assertEqual(len(self.get_json("/processor/jobs?limit=1")[1]["jobs"]), 1)

    def test_bad_requests_are_refused_with_reasons(self):
        self.assertEqual(self.get_json("/processor/status"), (400, {"error": True, "message": "Missing uuid param"}))
        self.assertEqual(self.get_json("/processor/status?uuid=nope"),
                         (404, {"error": True, "message": "No job for nope"}))
        status, body = self.get_json("/processor/jobs?state=lost")
        self.assertEqual(status, 400)
        self.assertIn("state must be one of queued, running", body["message"])
        self.assertEqual(self.get_json("/processor/jobs?limit=x")[0], 400)


class HealthTests(OpsCase):
    moto_private = True

    def test_health_is_ready_then_503_naming_the_backends_when_moto_stops(self):
        status, report = self.get_json("/health")
        self.assertEqual(status, 200, report)
        self.assertEqual(set(report["checks"]), {"database", "storage", "workflow", "journal", "upload_dir"})
        self.assertTrue(all(c["ok"] for c in report["checks"].values()))
        self.assertEqual((report["queue_depth"], report["jobs_running"], report["accepting_jobs"]), (0, 0, True))
        self.moto.stop()
        status, report = self.get_json("/health")
        self.assertEqual(status, 503)
        failing = {name for name, check in report["checks"].items() if not check["ok"]}
        self.assertEqual(failing, {"storage", "workflow"})
        self.assertIn("Could not connect", report["checks"]["storage"]["detail"])
        self.assertNotIn(SECRET, str(report))


class TokenTests(OpsCase):
    token = "ops-t0ken"

    def test_operator_routes_need_the_token_when_one_is_set(self):
        for path in ("/health", "/metrics", "/processor/status?uuid=x", "/processor/jobs"):
            status, _headers, body = self.server.get(path)
            self.assertEqual(status, 403, path)
            self.assertNotIn(self.token, body)
        self.assertEqual(self.get("/metrics")[0], 200)
        self.assertEqual(self.get("/processor/jobs")[0], 200)
