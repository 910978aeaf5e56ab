"""The deployment files in etc/ (systemd, logrotate) and the log formats."""

import json
import logging
import os
import shutil
import subprocess

from twisted.trial.unittest import SkipTest, TestCase

from popeye import logs
from tests.support import ROOT, TwistdServer, embedded_config, write_config


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SkipTest(f"{name} is not installed here")
    return path


class SystemdUnitTests(TestCase):
    def test_the_unit_passes_systemd_analyze_verify(self):
        unit = (ROOT / "etc" / "systemd" / "popeye.service").read_text()
        self.assertIn("ExecStart=/srv/popeye/venv/bin/twistd --nodaemon --pidfile= --logfile=- popeye", unit)
        self.assertIn("Restart=on-failure", unit)
        self.assertIn("TimeoutStopSec=60", unit)
        # verify wants the binary and the user to exist on this machine.
        local = unit.replace("/srv/popeye/venv/bin/twistd", shutil.which("true")).replace("=popeye\n", "=root\n")
        path = os.path.join(os.path.abspath(self.mktemp()) + "-popeye.service")
        with open(path, "w") as f:
            f.write(local)
        done = subprocess.run([tool("systemd-analyze"), "verify", path], capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)


class LogrotateTests(TestCase):
    def test_rotation_is_picked_up_without_copytruncate(self):
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        logfile = os.path.join(work, "popeye.log")
        config = (ROOT / "etc" / "logrotate" / "popeye").read_text()
        config = config.replace("/var/log/popeye/*.log", os.path.join(work, "*.log"))
        config = config.replace("create 0640 popeye popeye", "create 0640 root root")
        with open(os.path.join(work, "logrotate.conf"), "w") as f:
            f.write(config)
        logger = logs.configure(logfile, logging.INFO, logging.NullHandler())
        self.addCleanup(logs.configure, "", logging.INFO, logging.NullHandler())
        logger.info("before the rotation")
        done = subprocess.run(
            [tool("logrotate"), "-f", "-s", os.path.join(work, "state"), os.path.join(work, "logrotate.conf")],
            capture_output=True, text=True,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("error", done.stderr)
        logger.info("after the rotation")
        with open(logfile) as f:
            current = f.read()
        with open(logfile + ".1") as f:
            rotated = f.read()
        self.assertIn("after the rotation", current)
        self.assertNotIn("before the rotation", current)
        self.assertIn("before the rotation", rotated)


class JSONLogTests(TestCase):
    def test_json_log_format_writes_one_object_a_line(self):
        work = os.path.abspath(self.mktemp())
        config = embedded_config(work, log_format="json")
        server = TwistdServer(work, write_config(os.path.join(work, "etc"), config)).start(self)
        server.get("/dev/error/stdout?x=1")
        server.stop()
        with open(config["logfile"]) as f:
            lines = [json.loads(line) for line in f]
        starting = next(line for line in lines if line["message"].startswith("Popeye starting"))
        self.assertEqual((starting["level"], starting["logger"], starting["module"]), ("INFO", "popeye", "wsgi"))
        self.assertTrue(any("dev/error/stdout called" in line["message"] for line in lines))
