"""A real Apache httpd with mod_wsgi serving this checkout, for tests.

Apache will not serve as root, so when the tests run as root the mod_wsgi
daemon runs as ``www-data``.  That user cannot read a checkout or a Python
under ``/root``, so the checkout is installed (not editable) into a
virtualenv of Debian's ``/usr/bin/python3``, the Python that Debian's
``libapache2-mod-wsgi-py3`` is built for, under the world-readable
:data:`WORK_ROOT`.  Everything else a server needs (config, pid file,
mod_wsgi sockets, logs, the daemon's ``home=``) lives in a private
directory per server, so the system's ``/etc/apache2`` is never used.

Where Apache, mod_wsgi or that virtualenv cannot be had the tests are
skipped with the reason; ``POPEYE_REQUIRE_APACHE=1`` turns that skip into a
failure so that CI always runs them.
"""

import fcntl
import functools
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from tests import support

CHECKOUT = Path(__file__).resolve().parent.parent
APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
SYSTEM_PYTHON = "/usr/bin/python3"
WORK_ROOT = Path("/var/tmp/popeye-apache")
DAEMON_ACCOUNT = "www-data"


def unavailable(reason: str) -> Exception:
    """A skip, or a failure when ``POPEYE_REQUIRE_APACHE=1`` says this run
    must cover Apache."""
    return support.unavailable("POPEYE_REQUIRE_APACHE", reason)


def _check_machine() -> None:
    """Raise :func:`unavailable` unless Apache, mod_wsgi and a venv-capable
    system Python are installed (and, as root, the daemon account exists)."""
    if not os.access(APACHE, os.X_OK):
        raise unavailable(f"no Apache httpd at {APACHE} (apt-get install apache2)")
    if not (MODULES / "mod_wsgi.so").is_file():
        raise unavailable(f"no {MODULES}/mod_wsgi.so (apt-get install libapache2-mod-wsgi-py3)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise unavailable(f"no {SYSTEM_PYTHON}, the Python Debian's mod_wsgi is built for")
    probe = _run(SYSTEM_PYTHON, "-c", "import venv, ensurepip")
    if probe.returncode:
        raise unavailable(f"{SYSTEM_PYTHON} cannot make a virtualenv "
                          f"(apt-get install python3-venv): {probe.stderr.strip()}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(DAEMON_ACCOUNT)
        except KeyError:
            raise unavailable(f"no {DAEMON_ACCOUNT} account for the mod_wsgi daemon") from None


def _work_root() -> Path:
    """:data:`WORK_ROOT`, made traversable for the daemon account."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    WORK_ROOT.chmod(0o755)
    return WORK_ROOT


@contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` so that concurrent test runs never
    see a half-built virtualenv nor install into it at the same time."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(*argv: str) -> subprocess.CompletedProcess:
    """Run a command with umask 022, so the daemon account can read its output."""
    return subprocess.run(argv, capture_output=True, text=True, umask=0o022, check=False)


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    """``pip install`` with the virtualenv's own Python: its scripts are not needed."""
    return _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args)


def _failure(result: subprocess.CompletedProcess) -> str:
    output = (result.stdout + result.stderr).strip()
    return f"`{' '.join(result.args)}` exited {result.returncode}:\n{output[-4000:]}"


def _build_venv(venv: Path, source: Path) -> None:
    """A fresh virtualenv holding the checkout and its dependencies.

    Built in place under the lock rather than elsewhere and renamed: a
    virtualenv's scripts carry its absolute path.  A leftover from a build
    that died half-way has no ``.ready`` marker and is started over.
    """
    shutil.rmtree(venv, ignore_errors=True)
    steps = (
        lambda: _run(SYSTEM_PYTHON, "-m", "venv", str(venv)),
        lambda: _pip(venv, "--upgrade", "pip", "setuptools", "wheel"),
        lambda: _pip(venv, "--no-build-isolation", str(source)),
    )
    for step in steps:
        result = step()
        if result.returncode:
            raise unavailable(f"cannot build the Apache test virtualenv {venv}: {_failure(result)}")
    (venv / ".ready").touch()


@functools.cache
def installed_venv() -> Path:
    """The virtualenv that mod_wsgi runs, holding the current checkout.

    One virtualenv per version of ``setup.py`` (dependencies are installed
    once); the checkout itself is reinstalled once per test run so Apache
    always runs the code under test.
    """
    root = _work_root()
    digest = hashlib.sha256((CHECKOUT / "setup.py").read_bytes()).hexdigest()[:12]
    venv = root / f"venv-{digest}"
    with _locked(root / f"{venv.name}.lock"), tempfile.TemporaryDirectory() as scratch:
        source = support.copy_checkout(Path(scratch))
        if not (venv / ".ready").exists():
            _build_venv(venv, source)
        else:
            result = _pip(venv, "--no-deps", "--force-reinstall", "--no-build-isolation", str(source))
            if result.returncode:
                raise RuntimeError(f"cannot install the checkout into {venv}: {_failure(result)}")
    return venv


def _site_packages(venv: Path) -> Path:
    """Where the package was installed, to run the shipped script from there."""
    result = _run(str(venv / "bin" / "python"), "-c",
                  "import sysconfig; print(sysconfig.get_path('purelib'))")
    return Path(result.stdout.strip())


def local_config(home: Path) -> str:
    """A base ``popeye.config`` that keeps every file the app writes inside
    ``home`` and needs no AWS account and no MySQL: SQLite under the state
    directory, local storage, a workflow spool and log notices."""
    var = home / "var"
    return "\n".join([
        f'logfile: "{var}/log/popeye.log"',
        f'upload_dir: "{var}/uploads"',
        f'state_dir: "{var}/state"',
        'storage: "local"',
        f'local_storage_dir: "{var}/storage"',
        'workflow: "spool"',
        f'workflow_spool_dir: "{var}/workflows"',
        'notifier: "log"',
        "",
    ])


class ApacheServer:
    """One Apache httpd on a free port on 127.0.0.1, running Popeye's shipped
    ``etc/apache/popeye.wsgi`` in a mod_wsgi daemon process group.

    Usage: make one, ``addCleanup(server.stop)``, write the config files
    with :meth:`write_config` (and put any files the test needs under
    :attr:`home`), then :meth:`start`.  The process group name is the
    overlay Popeye loads, as on the production hosts.

    :attr:`root` holds ``httpd.conf``, ``run/`` (pid file, mutexes, mod_wsgi
    sockets), ``logs/`` and :attr:`home`, the daemon's ``home=`` and working
    directory, where Popeye finds ``etc/popeye.config``.  :meth:`start`
    gives :attr:`home` to the daemon account so the app can write there.
    """

    def __init__(self, process_group: str = "staging"):
        _check_machine()
        self.process_group = process_group
        self.root = Path(tempfile.mkdtemp(prefix="server-", dir=_work_root()))
        self.root.chmod(0o755)
        self.home = self.root / "home"
        for directory in (self.root / "run", self.root / "logs", self.home / "etc"):
            directory.mkdir(mode=0o755, parents=True)
        self.port = support.free_port()
        self._process: subprocess.Popen | None = None

    def write_config(self, name: str, text: str) -> Path:
        """Write ``home/etc/<name>`` (``popeye.config``, ``staging.config`` ...)."""
        path = self.home / "etc" / name
        path.write_text(text, encoding="utf-8")
        return path

    def url(self, path: str) -> str:
        """The URL of ``path`` (``/dev/ping?a=1``) on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        """Apache's error log, where mod_wsgi also writes the daemon's stderr
        and tracebacks, and the console output of httpd itself."""
        logs = [self.root / "logs" / name for name in ("console.log", "error.log")]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())

    def start(self, timeout: float = 30) -> None:
        """Install the checkout, write ``httpd.conf``, start httpd and wait
        until it accepts connections.  A failure carries the error log."""
        venv = installed_venv()
        script = _site_packages(venv) / "popeye" / "etc" / "apache" / "popeye.wsgi"
        if not script.is_file():
            raise RuntimeError(f"the installed package has no {script}")
        self._give_home_to_daemon()
        conf = self.root / "httpd.conf"
        conf.write_text(self._server_conf() + self._vhost_conf(venv, script))
        with open(self.root / "logs" / "console.log", "wb") as console:
            self._process = subprocess.Popen(
                [APACHE, "-f", str(conf), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                # LANG=C as Debian's /etc/apache2/envvars sets it: the vhost's
                # lang=/locale= must be what gives Python UTF-8 file names.
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                start_new_session=True,
            )
        self._wait_until_listening(timeout)

    def stop(self) -> None:
        """Stop httpd and every process it started, then delete :attr:`root`.
        Safe to call more than once and before :meth:`start`."""
        if self._process is not None:
            self._terminate(self._process)
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def check_config(self, vhost: Path) -> subprocess.CompletedProcess:
        """``apache2 -t`` on this server's settings plus the file ``vhost``:
        whether an operator's vhost (the shipped one) parses, with the
        mod_wsgi options checked by mod_wsgi itself.  Needs no :meth:`start`."""
        conf = self.root / "check.conf"
        conf.write_text(f"{self._server_conf()}Include {vhost}\n")
        return _run(APACHE, "-t", "-f", str(conf))

    def _give_home_to_daemon(self) -> None:
        """As root, Apache runs the daemon as :data:`DAEMON_ACCOUNT`, which
        must be able to write its logs, state and uploads under home."""
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam(DAEMON_ACCOUNT)
        for directory, _, files in os.walk(self.home):
            for path in [directory, *(os.path.join(directory, f) for f in files)]:
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)

    def _server_conf(self) -> str:
        """The server-wide part of a self-contained httpd config: only the
        modules needed, and every runtime file under :attr:`root`."""
        run, logs = self.root / "run", self.root / "logs"
        account = f"User {DAEMON_ACCOUNT}\nGroup {DAEMON_ACCOUNT}\n" if os.geteuid() == 0 else ""
        return f"""\
ServerRoot "{self.root}"
ServerName 127.0.0.1
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule wsgi_module {MODULES}/mod_wsgi.so
{account}PidFile "{run}/httpd.pid"
DefaultRuntimeDir "{run}"
WSGISocketPrefix "{run}/wsgi"
ErrorLog "{logs}/error.log"
LogLevel info
"""

    def _vhost_conf(self, venv: Path, script: Path) -> str:
        """The vhost: the shipped one's directives, on 127.0.0.1:port."""
        group = self.process_group
        account = f" user={DAEMON_ACCOUNT} group={DAEMON_ACCOUNT}" if os.geteuid() == 0 else ""
        return f"""\
Listen 127.0.0.1:{self.port}
<VirtualHost 127.0.0.1:{self.port}>
    WSGIDaemonProcess {group}{account} home={self.home} python-home={venv} threads=15 lang=C.UTF-8 locale=C.UTF-8
    WSGIProcessGroup {group}
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIScriptAlias / {script}/
    <Directory {script.parent}>
        Require all granted
    </Directory>
</VirtualHost>
"""

    def _wait_until_listening(self, timeout: float) -> None:
        """Return once httpd accepts connections (the daemon process group
        starts with it); fail early with the error log if httpd exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Apache exited with status {self._process.returncode}:\n"
                                   f"{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Apache did not listen on port {self.port} within {timeout}s:\n"
                           f"{self.error_log()}")

    @staticmethod
    def _terminate(process: subprocess.Popen) -> None:
        """SIGTERM makes httpd stop its children and mod_wsgi daemons; any
        process of its session still there after that is killed."""
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        _kill_session(process.pid)


def _kill_session(leader: int) -> None:
    """SIGKILL every process left in the session httpd was started in."""
    with suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)
