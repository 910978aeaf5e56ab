"""Legacy ``.config`` files -> one validated :class:`Settings` object.

The production hosts keep their files in the syntax of the ``config`` package
(< 0.5): ``key: "value"``, ``key: 3`` and ``loglevel: `DEBUG``` where the
backticks name an attribute of :mod:`logging`.  ``popeye.config`` is the base;
one overlay (``prod``, ``staging``, ``local`` ...) overwrites keys.  This
module is the only place that reads those files or the environment, so every
other module receives plain typed values.
"""

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import config as legacy_config
from sqlalchemy.engine import URL, make_url

BASE_FILE = "popeye.config"
STORAGES = ("s3", "local")
WORKFLOWS = ("swf", "stepfunctions", "spool")
NOTIFIERS = ("sqs", "log")
LOG_FORMATS = ("legacy", "json")


class ConfigError(Exception):
    """Start-up must stop: a file is missing, broken or holds a bad value."""


def _secret(default: str = "") -> Any:
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class Settings:
    """Every key Popeye understands, legacy and new, with its default.

    Relative paths are resolved against the working directory when the files
    are read, so the object only ever holds absolute paths.
    """

    # Legacy keys (SPEC section 6).
    logfile: str = "var/log/popeye.log"
    loglevel: int = logging.INFO
    log_format: str = "legacy"
    app_name: str = "popeye"
    db_name: str = ""
    db_user: str = ""
    db_pass: str = _secret()
    db_conn: str = ""
    db_verbose: bool = False
    VPWSuffix: str = ""
    UniqueTaskList: str = ""
    awsAccess: str = _secret()
    awsSecret: str = _secret()
    bucket_name: str = ""
    email_queue: str = ""
    sqs_region: str = ""
    site_secret: str = _secret()
    viblio_server_url: str = ""
    mp_token: str = _secret()
    mp_web_token: str = _secret()
    mp_deployment: str = ""
    # Keys added by this version; old files work without them.
    listen: str = "tcp:2222:interface=127.0.0.1"
    access_log: str = ""
    upload_dir: str = "var/uploads"
    state_dir: str = "var/state"
    db_url: str = _secret()
    storage: str = "local"
    local_storage_dir: str = "var/storage"
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""
    workflow: str = "spool"
    state_machine_arn: str = ""
    workflow_spool_dir: str = "var/workflows"
    notifier: str = "log"
    worker_threads: int = 4
    queue_limit: int = 100
    notify_token: str = _secret()
    retry_budget: float = 300.0
    shutdown_grace: float = 30.0
    sweep_interval: float = 60.0
    sweep_age: float = 60.0
    # Where the settings came from, for operators and logs.
    config_files: tuple[str, ...] = ()
    deployment: str = ""

    @property
    def database_url(self) -> URL:
        """The SQLAlchemy URL: ``db_url``, else the legacy MySQL keys, else SQLite.

        The legacy keys are assembled with :meth:`URL.create`, which escapes
        the ``@``, ``&`` and ``!`` that production passwords contain.
        """
        if self.db_url:
            return make_url(self.db_url)
        if self.db_name:
            host, port = _parse_db_conn(self.db_conn)
            return URL.create(
                "mysql+pymysql",
                username=self.db_user or None,
                password=self.db_pass or None,
                host=host,
                port=port,
                database=self.db_name,
                query={"charset": "utf8mb4"},
            )
        return URL.create("sqlite", database=os.path.join(self.state_dir, "popeye.db"))

    def describe(self) -> dict[str, Any]:
        """The settings as a dict with every secret masked: safe to log or print."""
        shown = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown[f.name] = "***" if f.metadata.get("secret") and value else value
        shown["database_url"] = self.database_url.render_as_string(hide_password=True)
        return shown

    def __repr__(self) -> str:
        return f"Settings({self.describe()!r})"

    __str__ = __repr__


def _parse_db_conn(db_conn: str) -> tuple[str, int | None]:
    """``@host[:port]/`` (the legacy spelling) -> (host, port)."""
    match = re.fullmatch(r"@?([^:/@]+)(?::(\d+))?/?", db_conn.strip())
    if not match:
        raise ConfigError(f"db_conn must look like @host[:port]/, not {db_conn!r}")
    return match.group(1), int(match.group(2)) if match.group(2) else None


def default_config_dir(cwd: str | None = None) -> str:
    """``etc/`` of the working directory, the working directory itself (the
    legacy layout, config beside ``popeye.py``), else the package's own copy."""
    cwd = cwd or os.getcwd()
    for candidate in (os.path.join(cwd, "etc"), cwd):
        if os.path.isfile(os.path.join(candidate, BASE_FILE)):
            return candidate
    try:
        return str(resources.files("popeye.etc"))
    except ModuleNotFoundError:  # a source checkout: etc/ sits beside the package
        return str(Path(__file__).resolve().parent.parent / "etc")


def deployment_name(explicit: str | None = None) -> str:
    """Which overlay to read: an explicit choice (``--deployment``), else the
    mod_wsgi process group when running under Apache, else ``DEPLOYMENT``."""
    if explicit:
        return explicit
    try:
        import mod_wsgi  # only importable inside an Apache mod_wsgi process
    except ImportError:
        pass
    else:
        if getattr(mod_wsgi, "process_group", ""):
            return mod_wsgi.process_group
    return os.environ.get("DEPLOYMENT", "")


def _read(path: str) -> dict[str, Any]:
    """One legacy file -> dict, with backtick values resolved against logging."""
    try:
        with open(path, encoding="utf-8") as stream:
            parsed = legacy_config.Config()
            parsed.addNamespace(logging)
            parsed.load(stream)
            return {key: parsed[key] for key in parsed.keys()}
    except (OSError, UnicodeDecodeError, legacy_config.ConfigError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"Cannot open/read/parse {path}: {reason}") from None


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool | int):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    if kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
    return "" if value is None else str(value)


_PATH_KEYS = ("logfile", "access_log", "upload_dir", "state_dir", "local_storage_dir", "workflow_spool_dir")


def _validate(s: Settings) -> None:
    for key, allowed in (
        ("storage", STORAGES),
        ("workflow", WORKFLOWS),
        ("notifier", NOTIFIERS),
        ("log_format", LOG_FORMATS),
    ):
        if getattr(s, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, not {getattr(s, key)!r}")
    if s.worker_threads < 1:
        raise ConfigError("worker_threads must be at least 1")
    for key in ("queue_limit", "retry_budget", "shutdown_grace", "sweep_interval", "sweep_age"):
        if getattr(s, key) < 0:
            raise ConfigError(f"{key} must not be negative")
    required = {
        "bucket_name": s.storage == "s3",
        "state_machine_arn": s.workflow == "stepfunctions",
        "email_queue": s.notifier == "sqs",
    }
    for key, needed in required.items():
        if needed and not getattr(s, key):
            raise ConfigError(f"{key} must be set for the configured backend")
    if s.aws_endpoint_url and not urlsplit(s.aws_endpoint_url).scheme.startswith("http"):
        raise ConfigError(f"aws_endpoint_url must be an http(s) URL, not {s.aws_endpoint_url!r}")
    try:
        s.database_url
    except Exception as exc:  # make_url raises ArgumentError; _parse_db_conn ConfigError
        raise ConfigError(f"bad database settings: {exc}") from None


def load_settings(config_dir: str | None = None, deployment: str | None = None) -> Settings:
    """Read ``popeye.config`` and its overlay from ``config_dir`` into Settings.

    Keys this version does not know (old keys of retired features) are kept
    out of the object and ignored, so production files load unchanged.
    """
    config_dir = config_dir or default_config_dir()
    name = deployment_name(deployment)
    if name and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"deployment name {name!r} is not a plain word")
    files = [os.path.join(config_dir, BASE_FILE)]
    if name and name + ".config" != BASE_FILE:
        files.append(os.path.join(config_dir, name + ".config"))
    merged: dict[str, Any] = {}
    for path in files:
        merged.update(_read(path))

    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    values = {
        key: _coerce(key, kinds[key], value)
        for key, value in merged.items()
        if key in kinds and key not in ("config_files", "deployment")
    }
    for key in _PATH_KEYS:
        raw = values.get(key, getattr(Settings, key))
        values[key] = str(Path(raw).expanduser().absolute()) if raw else raw
    settings = Settings(**values, config_files=tuple(files), deployment=name)
    _validate(settings)
    return settings
