"""Real servers and files for the tests: moto, MariaDB, twistd, fixtures.

Each helper starts the real thing on a free local port and stops it again.
A server that cannot run here makes the test skip with the reason, unless
the matching ``POPEYE_REQUIRE_*`` variable is set, in which case the test
fails: CI sets them so it always exercises the real thing.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
from twisted.trial.unittest import FailTest, SkipTest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "brewtus-uploads"
LEGACY_SCHEMA = Path(__file__).resolve().parent / "legacy_schema.sql"

#: The three captured uploads (see shared/fixtures/README.md).
ALBUM_UPLOAD = "6fdb2400-eff3-11f1-b988-9586f4410af8"
UNICODE_UPLOAD = "6fe05420-eff3-11f1-b988-9586f4410af8"
UNKNOWN_USER_UPLOAD = "6fe33a50-eff3-11f1-b988-9586f4410af8"
ANN = "0b1c2d3e-0000-4000-8000-000000000001"
BO = "0b1c2d3e-0000-4000-8000-000000000002"
ALBUM = "0b1c2d3e-0000-4000-8000-0000000000a1"

BUCKET = "popeye-test-bucket"
QUEUE = "popeye-test-email"


def unavailable(requirement: str, reason: str) -> Exception:
    """SkipTest, or a failure when ``requirement`` (an env var) is set to 1."""
    if os.environ.get(requirement) == "1":
        return FailTest(f"{requirement}=1 but {reason}")
    return SkipTest(reason)


def setenv(testcase, name: str, value: str | None) -> None:
    """Set (or with None, unset) an environment variable for one test."""
    old = os.environ.get(name)
    testcase.addCleanup(lambda: os.environ.__setitem__(name, old) if old is not None else os.environ.pop(name, None))
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, str]:
    """(status, headers, body) of a GET, whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8")


#: Left out of a copy that is installed: build output from an earlier
#: install would otherwise leak stale modules into the wheel.
NOT_INSTALLED = (".git", ".tox", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                 "_trial_temp*", "var", "dropin.cache")


def copy_checkout(destination: Path) -> Path:
    """A clean copy of the checkout to install from, so that installing never
    writes build output into the checkout nor picks up stale output from it."""
    source = Path(destination) / "popeye"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_INSTALLED))
    return source


def copy_upload(file_id: str, upload_dir: str) -> str:
    """Copy one fixture upload (its three files) into ``upload_dir``; return
    the path Brewtus would send."""
    os.makedirs(upload_dir, exist_ok=True)
    for source in FIXTURES.glob(file_id + "*"):
        target = os.path.join(upload_dir, source.name)
        shutil.copyfile(source, target)
    return os.path.join(upload_dir, file_id)


def render_config(values: dict) -> str:
    """Legacy ``.config`` text; a value ``("`", "DEBUG")`` is a backtick name."""
    lines = []
    for key, value in values.items():
        if isinstance(value, tuple) and value[0] == "`":
            lines.append(f"{key}: `{value[1]}`")
        elif isinstance(value, bool | int):
            lines.append(f"{key}: {int(value)}")
        else:
            lines.append(f"{key}: {json.dumps(str(value), ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def write_config(directory: str, base: dict, **overlays: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    Path(directory, "popeye.config").write_text(render_config(base), encoding="utf-8")
    for name, values in overlays.items():
        Path(directory, f"{name}.config").write_text(render_config(values), encoding="utf-8")
    return directory


def embedded_config(workdir: str, **overrides) -> dict:
    """Base config keys for a self-contained Popeye under ``workdir``."""
    values = {
        "loglevel": ("`", "DEBUG"),
        "logfile": os.path.join(workdir, "log", "popeye.log"),
        "upload_dir": os.path.join(workdir, "uploads"),
        "state_dir": os.path.join(workdir, "state"),
        "local_storage_dir": os.path.join(workdir, "storage"),
        "workflow_spool_dir": os.path.join(workdir, "workflows"),
        "storage": "local",
        "workflow": "spool",
        "notifier": "log",
        "bucket_name": BUCKET,
    }
    values.update(overrides)
    return values


class MotoServer:
    """moto's standalone server: S3, SWF, SQS and Step Functions over HTTP.

    One per test process (it starts in about a second); :meth:`reset`
    empties it between tests.
    """

    _shared: "MotoServer | None" = None

    def __init__(self):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto takes any credentials
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._up, 30, "moto server")

    @classmethod
    def shared(cls) -> "MotoServer":
        if cls._shared is None or cls._shared.process.poll() is not None:
            cls._shared = cls()
            atexit.register(cls._shared.stop)
        return cls._shared

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"moto server exited: {Path(self.log.name).read_text()}")
        try:
            urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
            return True
        except OSError:
            return False

    def reset(self) -> None:
        request = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")

    def prepare(self, suffix: str = "", task_list: str = "", swf: bool = True) -> None:
        """What production already has: the bucket, the queue, the SWF domain
        and workflow type (``swf=False``: no domain, so SWF refuses)."""
        self.reset()
        self.client("s3").create_bucket(Bucket=BUCKET)
        self.client("sqs").create_queue(QueueName=QUEUE)
        if not swf:
            return
        swf = self.client("swf")
        swf.register_domain(name="Viblio", workflowExecutionRetentionPeriodInDays="1")
        swf.register_workflow_type(
            domain="Viblio",
            name=f"VideoProcessing{suffix}",
            version="1.0.7",
            defaultTaskStartToCloseTimeout="300",
            defaultExecutionStartToCloseTimeout="3600",
            defaultTaskList={"name": f"VPDecider{suffix}{task_list}"},
            defaultChildPolicy="TERMINATE",
        )

    def aws_config(self, **overrides) -> dict:
        values = {
            "storage": "s3",
            "workflow": "swf",
            "notifier": "sqs",
            "aws_endpoint_url": self.endpoint,
            "bucket_name": BUCKET,
            "email_queue": QUEUE,
            "sqs_region": "us-east-1",
        }
        values.update(overrides)
        return values

    def open_executions(self) -> list[dict]:
        swf = self.client("swf")
        infos = swf.list_open_workflow_executions(domain="Viblio", startTimeFilter={"oldestDate": 0})
        return infos["executionInfos"]

    def workflow_input(self, workflow_id: str) -> dict:
        swf = self.client("swf")
        [info] = [i for i in self.open_executions() if i["execution"]["workflowId"] == workflow_id]
        history = swf.get_workflow_execution_history(domain="Viblio", execution=info["execution"])
        return json.loads(history["events"][0]["workflowExecutionStartedEventAttributes"]["input"])

    def messages(self) -> list[dict]:
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
        found = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            found.extend(json.loads(m["Body"]) for m in batch)
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return found

    def objects(self) -> dict[str, bytes]:
        s3 = self.client("s3")
        listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class MariaDB:
    """A scratch database holding the legacy tables, dropped in cleanup."""

    HOST = os.environ.get("POPEYE_MYSQL_HOST", "127.0.0.1")
    PORT = int(os.environ.get("POPEYE_MYSQL_PORT", "3306"))
    USER = os.environ.get("POPEYE_MYSQL_USER", "root")
    PASSWORD = os.environ.get("POPEYE_MYSQL_PASSWORD", "")

    def __init__(self, testcase):
        import pymysql

        self.name = f"popeye_test_{uuid.uuid4().hex[:12]}"
        try:
            self.admin = pymysql.connect(
                host=self.HOST, port=self.PORT, user=self.USER, password=self.PASSWORD, connect_timeout=3
            )
        except pymysql.err.MySQLError as exc:
            raise unavailable("POPEYE_REQUIRE_MYSQL", f"no MySQL at {self.HOST}:{self.PORT}: {exc}") from None
        with self.admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
        testcase.addCleanup(self.drop)
        self.execute_script(LEGACY_SCHEMA.read_text())

    @property
    def url(self) -> str:
        from sqlalchemy.engine import URL

        return URL.create(
            "mysql+pymysql",
            username=self.USER,
            password=self.PASSWORD or None,
            host=self.HOST,
            port=self.PORT,
            database=self.name,
            query={"charset": "utf8mb4"},
        ).render_as_string(hide_password=False)

    def execute_script(self, script: str) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(f"USE {self.name}")
            code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
            for statement in code.split(";"):
                if statement.strip():
                    cursor.execute(statement)
        self.admin.commit()

    def drop(self) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
        self.admin.close()


class TwistdServer:
    """``twistd -n popeye`` as a child process on a free port."""

    def __init__(self, workdir: str, config_dir: str, deployment: str | None = None, env: dict | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.twistd_log = os.path.join(workdir, "twistd.log")
        args = [
            os.path.join(os.path.dirname(sys.executable), "twistd"),
            "-n",
            "--pidfile=",
            "--logfile",
            self.twistd_log,
            "popeye",
            "--config-dir",
            config_dir,
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1",
        ]
        if deployment:
            args += ["--deployment", deployment]
        child_env = dict(os.environ, PYTHONPATH=str(ROOT))
        child_env.pop("DEPLOYMENT", None)
        child_env.update(env or {})
        self.stderr = open(os.path.join(workdir, "twistd.stderr"), "ab")
        self.process = subprocess.Popen(args, cwd=workdir, env=child_env, stderr=self.stderr)

    def start(self, testcase=None) -> "TwistdServer":
        """Wait until it answers; with a test case, stop it in its cleanup."""
        if testcase is not None:
            testcase.addCleanup(self.stop)
        wait_until(self._up, 30, f"twistd popeye on {self.port}")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"twistd exited {self.process.returncode}: {self.logs()}")
        try:
            return http_get(self.url + "/dev/ping", timeout=1)[0] == 200
        except OSError:
            return False

    def get(self, path: str, **kwargs) -> tuple[int, dict, str]:
        return http_get(self.url + path, **kwargs)

    def get_json(self, path: str, **kwargs) -> tuple[int, dict]:
        status, _headers, body = self.get(path, **kwargs)
        return status, json.loads(body)

    def logs(self) -> str:
        paths = (self.twistd_log, self.stderr.name)
        return "\n".join(Path(p).read_text(errors="replace") for p in paths if os.path.exists(p))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"twistd did not stop within {timeout}s")
        self.stderr.close()
        return self.process.returncode


def seed_users(session_factory) -> dict[str, int]:
    """The fixture uploaders, as rows of ``users``: uuid -> id."""
    from popeye.models import User

    with session_factory() as session, session.begin():
        users = [
            User(uuid=ANN, email="ann@example.com", displayname="Ann"),
            User(uuid=BO, email="bo@example.com", displayname="Bo"),
        ]
        session.add_all(users)
        session.flush()
        return {u.uuid: u.id for u in users}


def fixture_md5() -> str:
    """All three fixture uploads carry the same 4096 bytes."""
    import hashlib

    return hashlib.md5((FIXTURES / ALBUM_UPLOAD).read_bytes()).hexdigest()


def write_brewtus_upload(upload_dir: str, file_id: str, data: bytes, uid: str, client_path: str = "clip.mp4",
                         link_from: str | None = None) -> str:
    """An upload shaped as Brewtus leaves one, with our own bytes: distinct
    content per upload, so none is a duplicate of another.  With ``link_from``
    the upload is a hard link to that file instead (big benchmark files are
    then neither copied nor evicted from the page cache)."""
    from popeye.uploads import write_upload

    if link_from is None:
        link_from = os.path.join(upload_dir, f".{file_id}.source")
        os.makedirs(upload_dir, exist_ok=True)
        Path(link_from).write_bytes(data)
        try:
            return write_upload(upload_dir, file_id, link_from, uid, client_path, link=True).path
        finally:
            os.unlink(link_from)
    return write_upload(upload_dir, file_id, link_from, uid, client_path, link=True).path
