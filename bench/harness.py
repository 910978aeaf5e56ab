"""What every benchmark needs: a moto server, a Popeye under twistd (or a
peer server), upload files, timing, and markdown tables.

The benchmarks start the same real servers the tests start
(:mod:`tests.support`), so they run from a checkout:
``python -m bench.b1_bandwidth``.  Every run measures the reference peer on
the same machine in the same run, and reports ratios, since these machines
are shared and noisy.
"""

import argparse
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from popeye.config import load_settings
from popeye.database import open_database
from tests.support import (
    ANN,
    BUCKET,
    MotoServer,
    TwistdServer,
    embedded_config,
    seed_users,
    wait_until,
    write_brewtus_upload,
    write_config,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


def parse_size(text: str) -> int:
    """``64M``, ``2G``, ``512K`` or a byte count."""
    match = re.fullmatch(r"(\d+)([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    unit = {"": 1, "K": 1024, "M": MiB, "G": GiB}[match.group(2).upper()]
    return int(match.group(1)) * unit


def sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",")]


def human(size: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def median(values) -> float:
    return statistics.median(values)


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def write_random_file(path: str, size: int) -> str:
    """``size`` random bytes (incompressible, unique per file), written in blocks."""
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            f.write(block)
            left -= len(block)
    return path


class PopeyeStack:
    """Popeye under ``twistd`` against a moto server (S3, SWF, SQS) with the
    embedded SQLite database: the pipeline with no network beyond loopback."""

    def __init__(self, workdir: str, **config):
        self.workdir = workdir
        self.moto = MotoServer.shared()
        self.moto.prepare()
        self.config = embedded_config(workdir, loglevel=("`", "INFO"), sweep_interval=0, **self.moto.aws_config())
        self.config.update(config)
        self.upload_dir = self.config["upload_dir"]
        self.config_dir = write_config(os.path.join(workdir, "etc"), self.config)
        self.server: TwistdServer | None = None

    def prepare_database(self) -> None:
        """The embedded database with the uploading users, once."""
        if not os.path.exists(os.path.join(self.config["state_dir"], "popeye.db")):
            seed_users(open_database(load_settings(self.config_dir, "")))

    def start(self) -> TwistdServer:
        self.prepare_database()
        self.server = TwistdServer(self.workdir, self.config_dir).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def place(self, source: str) -> str:
        """Put ``source`` into the upload directory as a fresh Brewtus upload
        (a hard link, so the bytes are not copied and stay in the page cache)."""
        file_id = str(uuid.uuid4())
        write_brewtus_upload(self.upload_dir, file_id, b"", ANN, link_from=source)
        return file_id

    def notify(self, file_id: str) -> dict:
        path = os.path.join(self.upload_dir, file_id)
        status, body = self.server.get_json(f"/processor/process?path={path}")
        if status != 200 or body.get("error"):
            raise RuntimeError(f"notification refused: {status} {body}")
        return body

    def states(self, file_ids) -> dict[str, str]:
        db = sqlite3.connect(os.path.join(self.config["state_dir"], "journal.db"))
        try:
            marks = ",".join("?" * len(file_ids))
            rows = db.execute(f"SELECT uuid, state FROM jobs WHERE uuid IN ({marks})", list(file_ids))
            return dict(rows.fetchall())
        finally:
            db.close()

    def wait_done(self, file_ids, timeout: float = 900) -> None:
        """Until every job is done (its workflow started and its files removed)."""
        file_ids = list(file_ids)

        def finished():
            states = self.states(file_ids)
            failed = [f for f, s in states.items() if s not in ("queued", "running", "done")]
            if failed:
                raise RuntimeError(f"jobs ended badly: {failed}; see {self.config['logfile']}")
            return len(states) == len(file_ids) and all(s == "done" for s in states.values())

        wait_until(finished, timeout, "jobs to finish", interval=0.01)

    def reset(self) -> None:
        """Forget earlier runs: the same bytes uploaded again must not count
        as a duplicate video, and moto's memory must not grow."""
        self.moto.prepare()
        db = sqlite3.connect(os.path.join(self.config["state_dir"], "popeye.db"))
        try:
            for table_name in ("media_assets", "media_workflow_stages", "media_albums", "media"):
                db.execute(f"DELETE FROM {table_name}")
            db.commit()
        finally:
            db.close()


def reference_upload(path: str, key: str, endpoint: str) -> float:
    """``md5sum F && aws s3 cp F s3://bucket/key``: seconds taken."""
    aws = shutil.which("aws", path=os.path.dirname(sys.executable)) or shutil.which("aws")
    if aws is None:
        raise SystemExit("the AWS CLI is needed: pip install '.[bench]'")
    command = f"md5sum {path} >/dev/null && {aws} s3 cp --quiet --endpoint-url {endpoint} {path} s3://{BUCKET}/{key}"
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, env=dict(os.environ, AWS_DEFAULT_REGION="us-east-1"))
    return time.perf_counter() - started


@contextmanager
def scratch(prefix: str):
    """A working directory on the same file system as the checkout's var/."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")
