"""The fault suite: real twistd processes, a real moto server and MariaDB,
and the faults production sees: kill -9, network outages, repeated and
missing notifications, SIGTERM during long jobs, hostile requests.

Every scenario checks the same promise: each upload ends processed exactly
once in effect (one ``media`` row, objects equal to the originals, one
workflow execution) or safely in ``errors/``, and none is lost.  The counts
are added up in a ledger printed as a table when the test run ends.
"""

import atexit
import contextlib
import http.client
import json
import os
import random
import signal
import sqlite3
import string
import threading
import time
import uuid
from collections import Counter
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import create_engine, select, text
from twisted.trial.unittest import TestCase

from popeye.config import load_settings
from popeye.database import open_database
from popeye.models import Media
from tests.proxy import TCPProxy
from tests.support import (
    ANN,
    MariaDB,
    MotoServer,
    TwistdServer,
    embedded_config,
    seed_users,
    wait_until,
    write_brewtus_upload,
    write_config,
)

#: Characters a hostile client can send unescaped in a request line.
RAW_SAFE = string.punctuation.replace("#", "")

KiB = 1024
MiB = 1024 * KiB


class Ledger:
    """Totals across the fault suite, printed as a markdown table at exit."""

    ROWS = (
        ("uploads processed", "processed"),
        ("crashes injected (kill -9)", "crashes"),
        ("uploads unfinished when killed, finished after restart", "resumed"),
        ("outage seconds survived", "outage_seconds"),
        ("transient retries recorded", "retries"),
        ("fuzz cases tried", "fuzz_cases"),
        ("uploads lost (must be 0)", "lost"),
        ("duplicate effects (must be 0)", "duplicates"),
    )

    def __init__(self):
        self.totals: Counter = Counter()
        self._registered = False

    def add(self, **counts: int) -> None:
        if not self._registered:
            atexit.register(self.print_table)
            self._registered = True
        self.totals.update(counts)

    def print_table(self) -> None:
        print("\nFault suite summary\n\n| measure | count |\n| --- | ---: |")
        for label, key in self.ROWS:
            print(f"| {label} | {self.totals[key]} |")


LEDGER = Ledger()


class FaultCase(TestCase):
    """Popeye under twistd against moto (S3, SWF, SQS) and a fresh MariaDB
    database, optionally through proxies that the test can cut."""

    timeout = 600
    proxy_aws = False
    proxy_mysql = False
    overrides: dict = {}

    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.moto = MotoServer.shared()
        self.moto.prepare()
        self.mariadb = MariaDB(self)
        db_url = self.mariadb.url
        endpoint = self.moto.endpoint
        if self.proxy_aws:
            self.aws_proxy = TCPProxy(self.moto.port)
            self.addCleanup(self.aws_proxy.stop)
            endpoint = f"http://127.0.0.1:{self.aws_proxy.port}"
        if self.proxy_mysql:
            self.mysql_proxy = TCPProxy(MariaDB.PORT, MariaDB.HOST)
            self.addCleanup(self.mysql_proxy.stop)
            db_url = db_url.replace(f"@{MariaDB.HOST}:{MariaDB.PORT}/", f"@127.0.0.1:{self.mysql_proxy.port}/")
        values = embedded_config(
            self.work,
            db_url=db_url,
            retry_budget=180,
            shutdown_grace=2,
            sweep_interval=1,
            sweep_age=1,
            **self.moto.aws_config(aws_endpoint_url=endpoint),
        )
        values.update(self.overrides)
        self.config = values
        self.upload_dir = values["upload_dir"]
        self.config_dir = write_config(os.path.join(self.work, "etc"), values)
        self.db = open_database(load_settings(self.config_dir, ""))
        seed_users(self.db)
        self.engine = create_engine(self.mariadb.url)
        self.addCleanup(self.engine.dispose)

    def start(self) -> TwistdServer:
        self.server = TwistdServer(self.work, self.config_dir).start(self)
        return self.server

    def make_uploads(self, count: int, rng: random.Random, low: int, high: int) -> dict[str, bytes]:
        uploads = {}
        for _ in range(count):
            file_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            data = rng.randbytes(rng.randint(low, high))
            write_brewtus_upload(self.upload_dir, file_id, data, ANN)
            uploads[file_id] = data
        return uploads

    def notify(self, file_id: str) -> tuple[int, dict]:
        path = os.path.join(self.upload_dir, file_id)
        return self.server.get_json(f"/processor/process?path={quote(path)}&skip_faces=&try_photos=")

    def journal(self) -> dict[str, dict]:
        db = sqlite3.connect(os.path.join(self.config["state_dir"], "journal.db"))
        db.row_factory = sqlite3.Row
        try:
            return {row["uuid"]: dict(row) for row in db.execute("SELECT * FROM jobs")}
        finally:
            db.close()

    def wait_done(self, file_ids, timeout: float = 240) -> dict[str, dict]:
        def all_done():
            entries = self.journal()
            return all(entries.get(f, {}).get("state") == "done" for f in file_ids) and entries

        return wait_until(all_done, timeout, f"{len(file_ids)} jobs to be done", interval=0.25)

    def verify(self, uploads: dict[str, bytes]) -> None:
        """The end state of a run, whatever happened during it."""
        with self.engine.connect() as db:
            rows = Counter(db.execute(select(Media.uuid)).scalars())
        executions = Counter(i["execution"]["workflowId"] for i in self.moto.open_executions())
        objects = self.moto.objects()
        lost = [f for f in uploads if rows[f] == 0]
        duplicates = sum(max(rows[f] - 1, 0) + max(executions[f] - 1, 0) for f in uploads)
        LEDGER.add(processed=len(uploads) - len(lost), lost=len(lost), duplicates=duplicates)
        self.assertEqual(lost, [], "uploads lost")
        self.assertEqual(duplicates, 0, "duplicate effects")
        for file_id, data in uploads.items():
            self.assertEqual(rows[file_id], 1)
            self.assertEqual(executions[file_id], 1)
            self.assertEqual(objects[f"{file_id}/{file_id}"], data, file_id)
        self.assertEqual([n for n in os.listdir(self.upload_dir) if n != "errors"], [])
        errors = os.path.join(self.upload_dir, "errors")
        self.assertEqual(os.listdir(errors) if os.path.isdir(errors) else [], [])


class CrashTests(FaultCase):
    def test_kill_9_at_a_random_moment_loses_nothing_and_doubles_nothing(self):
        """The kill lands while notifications are still arriving and jobs run;
        uploads whose notification never got through are left to the sweeper."""
        cut_short = 0
        for seed in (1, 2, 3):
            self.moto.prepare()
            rng = random.Random(seed)
            uploads = self.make_uploads(20, rng, 2 * MiB, 16 * MiB)
            self.start()
            notifier = threading.Thread(target=self.notify_all, args=(uploads,))
            notifier.start()
            time.sleep(rng.uniform(0.2, 1.5))
            self.server.stop(signal.SIGKILL)
            notifier.join()
            unfinished = len(uploads) - sum(e["state"] == "done" for e in self.journal().values())
            cut_short += unfinished
            LEDGER.add(crashes=1, resumed=unfinished)
            self.start()
            self.wait_done(uploads)
            self.server.stop()
            self.verify(uploads)
            with self.engine.begin() as db:  # the next seed starts from empty tables
                for table in ("media_assets", "media_workflow_stages", "media"):
                    db.execute(text(f"DELETE FROM {table}"))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.config["state_dir"], "journal.db" + suffix))
        self.assertGreater(cut_short, 0, "the crashes cut jobs short")

    def notify_all(self, uploads) -> None:
        for file_id in uploads:
            try:
                self.notify(file_id)
            except OSError:
                return  # the server is gone; the sweeper finds the rest


class OutageTests(FaultCase):
    """20 seconds without S3/SWF/SQS, or without MySQL, during a batch."""

    outage = 20
    overrides = {"worker_threads": 4}

    def run_through_outage(self, proxy: TCPProxy) -> None:
        uploads = self.make_uploads(8, random.Random(7), 256 * KiB, 2 * MiB)
        self.start()
        proxy.cut()
        for file_id in uploads:
            self.assertEqual(self.notify(file_id)[0], 200)
        time.sleep(self.outage)
        proxy.restore()
        entries = self.wait_done(uploads)
        retries = sum(entries[f]["retries"] for f in uploads)
        LEDGER.add(outage_seconds=self.outage, retries=retries)
        hit = [f for f in uploads if entries[f]["retries"] and entries[f]["last_error"]]
        # The jobs running when the outage began waited it out, on record.
        self.assertGreaterEqual(len(hit), 4, "the journal records the retries")
        self.verify(uploads)


class AWSOutageTests(OutageTests):
    proxy_aws = True

    def test_jobs_survive_an_aws_outage(self):
        self.run_through_outage(self.aws_proxy)


class MySQLOutageTests(OutageTests):
    proxy_mysql = True

    def test_jobs_survive_a_mysql_outage(self):
        self.run_through_outage(self.mysql_proxy)


class DuplicateNotificationTests(FaultCase):
    overrides = {"sweep_interval": 0}

    def test_ten_concurrent_notifications_make_one_job(self):
        uploads = self.make_uploads(1, random.Random(3), 8 * MiB, 8 * MiB)
        [file_id] = uploads
        self.start()
        replies = []
        threads = [threading.Thread(target=lambda: replies.append(self.notify(file_id))) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        jobs = [r for r in replies if r[0] == 200 and r[1]["job"] == "queued"]
        self.assertEqual(len(jobs), 1, replies)
        for status, body in replies:
            self.assertIn((status, body.get("job") or body.get("message")),
                          [(200, "queued"), (200, "already queued"), (200, "already running"), (404, "file not found")])
        self.wait_done(uploads)
        self.assertEqual(self.journal()[file_id]["attempts"], 1)
        self.verify(uploads)


class MissedNotificationTests(FaultCase):
    def test_upload_finished_while_popeye_was_down_is_swept_up(self):
        uploads = self.make_uploads(3, random.Random(11), 64 * KiB, 256 * KiB)
        time.sleep(1.1)  # older than sweep_age
        self.start()
        self.wait_done(uploads, timeout=60)
        self.verify(uploads)
        with open(self.config["logfile"], encoding="utf-8") as log:
            self.assertEqual(log.read().count("was never notified"), 3)

    def test_an_unfinished_upload_is_left_for_brewtus(self):
        [file_id] = self.make_uploads(1, random.Random(12), 64 * KiB, 64 * KiB)
        info_path = os.path.join(self.upload_dir, file_id + ".json")
        with open(info_path) as f:
            info = json.load(f)
        info["offset"] = info["finalLength"] // 2
        with open(info_path, "w") as f:
            json.dump(info, f)
        self.start()
        time.sleep(3)  # three sweeps
        self.assertEqual(self.journal(), {})
        self.assertTrue(os.path.exists(os.path.join(self.upload_dir, file_id)))


class ShutdownTests(FaultCase):
    overrides = {"worker_threads": 2, "sweep_interval": 0}

    def test_sigterm_during_long_jobs_stops_in_time_and_they_finish_after_restart(self):
        uploads = self.make_uploads(3, random.Random(5), 192 * MiB, 256 * MiB)
        self.start()
        for file_id in uploads:
            self.notify(file_id)
        wait_until(lambda: sum(e["bytes_done"] > 0 for e in self.journal().values()) >= 2, 60,
                   "two uploads under way")
        started = time.monotonic()
        # twistd ends a signalled shutdown by re-raising the signal.
        self.assertIn(self.server.stop(signal.SIGTERM, timeout=30), (0, -signal.SIGTERM))
        took = time.monotonic() - started
        self.assertLess(took, self.config["shutdown_grace"] + 8, "stopped within shutdown_grace plus a margin")
        states = Counter(e["state"] for e in self.journal().values())
        self.assertEqual(states["queued"], 3, f"interrupted and waiting jobs stay queued: {states}")
        self.assertEqual([n for n in os.listdir(self.upload_dir) if n.endswith(".lock")], [])
        self.start()
        self.wait_done(uploads)
        self.server.stop()
        self.verify(uploads)


class FuzzTests(FaultCase):
    """Hostile ``path`` values: never a 5xx, never a file touched outside."""

    overrides = {"sweep_interval": 0}

    def setUp(self):
        super().setUp()
        os.makedirs(self.upload_dir)
        self.secret = os.path.join(self.work, "secret.txt")
        with open(self.secret, "w") as f:
            f.write("do not upload")
        os.symlink(self.secret, os.path.join(self.upload_dir, "link-out"))
        os.symlink("/etc/passwd", os.path.join(self.upload_dir, "passwd"))
        self.start()
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple]:
        """Every file under the work tree but the places Popeye may write."""
        allowed = [os.path.join(self.upload_dir, "errors"), self.config["state_dir"],
                   self.config["local_storage_dir"], os.path.dirname(self.config["logfile"])]
        seen = {}
        for directory, _, files in os.walk(self.work):
            if any(directory == a or directory.startswith(a + os.sep) for a in allowed):
                continue
            for name in files:
                path = os.path.join(directory, name)
                if path == self.server.twistd_log:
                    continue
                stat = os.lstat(path)
                seen[path] = (stat.st_size, stat.st_mtime_ns)
        return seen

    def test_hostile_paths_never_cause_a_5xx_or_touch_a_file(self):
        upload_dir = self.upload_dir
        pieces = st.sampled_from(
            ["..", ".", "", "/", "//", upload_dir, upload_dir + "/", self.secret, "/etc/passwd", "link-out",
             "passwd", "%00", "\x00", "%2e%2e", "%", "%zz", "%C0%AE", "\\", "é", "\u202e", "~", "*", "?", "&",
             "=", "#", " ", "errors", ".json", ".lock", "a" * 300]
        )
        text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
        raw = st.lists(pieces, max_size=8).map("".join) | text | st.just("x" * 5000)
        cases = []

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(raw, st.booleans(), st.integers(min_value=1, max_value=3))
        def probe(value, encode, repeats):
            # Encoded, or raw but for what HTTP itself cannot carry: "%" stays
            # as it is, so bad percent-encodings reach the server.
            value = quote(value, safe="/" if encode else RAW_SAFE)
            query = "&".join(["path=" + value] * repeats) + "&skip_faces=&try_photos="
            cases.append(query)
            status, _headers, body = self.request("/processor/process?" + query)
            self.assertLess(status, 500, (query, body))
            if status != 414:
                reply = json.loads(body)
                self.assertTrue(reply.get("error") or "full_filename" in reply)

        probe()
        LEDGER.add(fuzz_cases=len(cases))
        self.assertEqual(self.snapshot(), self.before)
        with open(self.secret) as f:
            self.assertEqual(f.read(), "do not upload")
        self.assertEqual(self.moto.objects(), {})

    def request(self, path: str) -> tuple[int, dict, str]:
        """A raw GET (bad percent-encoding and all), as a hostile client sends it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.putrequest("GET", path, skip_accept_encoding=True)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
        finally:
            connection.close()
