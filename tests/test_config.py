"""Legacy config files -> Settings (SPEC section 6)."""

import logging
import os
import sys
import types

from sqlalchemy import create_engine, text
from twisted.trial.unittest import TestCase

from popeye.config import ConfigError, Settings, default_config_dir, load_settings
from tests.support import MariaDB, setenv, write_config

LEGACY_BASE = """\
# as on the production hosts
logfile: "/var/log/popeye.log"
loglevel: `DEBUG`
app_name: "popeye"
db_name: "video_dev"
db_user: "web"
db_pass: "s3cr@t&pass!"
db_conn: "@db.internal:3307/"
db_verbose: 0
VPWSuffix: ""
UniqueTaskList: ""
awsAccess: "AKIAEXAMPLE"
awsSecret: "aws-secret-value"
bucket_name: "viblio-uploaded-files"
email_queue: "email"
sqs_region: "us-west-2"
site_secret: "site-secret-value"
viblio_server_url: "http://localhost"
mp_token: "mixpanel-token-value"
mp_web_token: "mixpanel-web-token-value"
mp_deployment: "local"
facebook_app_id: "a key of a retired feature"
"""

SECRETS = (
    "s3cr@t&pass!",
    "AKIAEXAMPLE",
    "aws-secret-value",
    "site-secret-value",
    "mixpanel-token-value",
    "mixpanel-web-token-value",
)


class LegacyFileTests(TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "popeye.config"), "w") as f:
            f.write(LEGACY_BASE)
        setenv(self, "DEPLOYMENT", "")

    def overlay(self, name, body):
        with open(os.path.join(self.dir, name + ".config"), "w") as f:
            f.write(body)

    def test_legacy_file_loads_unchanged_with_backtick_level_and_quoted_strings(self):
        s = load_settings(self.dir)
        self.assertEqual(s.loglevel, logging.DEBUG)
        self.assertEqual(s.db_pass, "s3cr@t&pass!")
        self.assertEqual(s.sqs_region, "us-west-2")
        self.assertIs(s.db_verbose, False)
        self.assertEqual(s.VPWSuffix, "")

    def test_new_keys_get_safe_defaults_when_an_old_file_lacks_them(self):
        s = load_settings(self.dir)
        self.assertEqual(s.listen, "tcp:2222:interface=127.0.0.1")
        self.assertEqual((s.storage, s.workflow, s.notifier), ("local", "spool", "log"))
        self.assertEqual(s.worker_threads, 4)
        self.assertEqual(s.notify_token, "")
        self.assertTrue(os.path.isabs(s.upload_dir))

    def test_overlay_named_by_DEPLOYMENT_overrides_base_keys(self):
        self.overlay("staging", 'loglevel: `WARNING`\nVPWSuffix: "Staging"\n')
        self.overlay("prod", 'VPWSuffix: "Prod"\n')
        setenv(self, "DEPLOYMENT", "staging")
        s = load_settings(self.dir)
        self.assertEqual((s.loglevel, s.VPWSuffix, s.app_name), (logging.WARNING, "Staging", "popeye"))
        self.assertEqual(s.deployment, "staging")
        self.assertEqual(s.config_files[-1], os.path.join(self.dir, "staging.config"))

    def test_explicit_deployment_wins_over_the_environment(self):
        self.overlay("staging", 'VPWSuffix: "Staging"\n')
        self.overlay("local", 'VPWSuffix: "Local"\n')
        setenv(self, "DEPLOYMENT", "staging")
        self.assertEqual(load_settings(self.dir, deployment="local").VPWSuffix, "Local")

    def test_mod_wsgi_process_group_wins_over_the_environment(self):
        self.overlay("prod", 'VPWSuffix: "Prod"\n')
        self.overlay("staging", 'VPWSuffix: "Staging"\n')
        setenv(self, "DEPLOYMENT", "staging")
        self.patch(sys, "modules", dict(sys.modules, mod_wsgi=types.SimpleNamespace(process_group="prod")))
        s = load_settings(self.dir)
        self.assertEqual((s.deployment, s.VPWSuffix), ("prod", "Prod"))

    def test_missing_overlay_stops_start_up_naming_the_file(self):
        setenv(self, "DEPLOYMENT", "prod")
        with self.assertRaises(ConfigError) as caught:
            load_settings(self.dir)
        path = os.path.join(self.dir, "prod.config")
        self.assertEqual(str(caught.exception), f"Cannot open/read/parse {path}: No such file or directory")

    def test_missing_base_file_stops_start_up_naming_the_file(self):
        empty = self.mktemp()
        os.makedirs(empty)
        with self.assertRaises(ConfigError) as caught:
            load_settings(empty)
        self.assertTrue(str(caught.exception).startswith(f"Cannot open/read/parse {empty}/popeye.config: "))

    def test_broken_file_stops_start_up_with_the_parse_error(self):
        self.overlay("local", 'VPWSuffix: "unterminated\n')
        with self.assertRaises(ConfigError) as caught:
            load_settings(self.dir, "local")
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"Cannot open/read/parse {self.dir}/local.config: "), message)
        self.assertGreater(len(message), len(f"Cannot open/read/parse {self.dir}/local.config: "))

    def test_bad_values_are_refused_with_the_key_named(self):
        for body, key in (
            ('storage: "ftp"\n', "storage"),
            ("worker_threads: 0\n", "worker_threads"),
            ('worker_threads: "many"\n', "worker_threads"),
            ('storage: "s3"\nbucket_name: ""\n', "bucket_name"),
            ('workflow: "stepfunctions"\n', "state_machine_arn"),
            ("shutdown_grace: -1\n", "shutdown_grace"),
            ('retry_budget: "soon"\n', "retry_budget"),
            ('db_conn: "@@"\n', "db_conn"),
        ):
            self.overlay("local", body)
            with self.assertRaises(ConfigError) as caught:
                load_settings(self.dir, "local")
            self.assertIn(key, str(caught.exception))

    def test_legacy_database_keys_build_an_escaped_mysql_url(self):
        url = load_settings(self.dir).database_url
        self.assertEqual(url.drivername, "mysql+pymysql")
        self.assertEqual((url.username, url.password), ("web", "s3cr@t&pass!"))
        self.assertEqual((url.host, url.port, url.database), ("db.internal", 3307, "video_dev"))
        self.assertEqual(url.query["charset"], "utf8mb4")

    def test_db_url_wins_over_the_legacy_database_keys(self):
        self.overlay("local", 'db_url: "sqlite:////tmp/x.db"\n')
        self.assertEqual(str(load_settings(self.dir, "local").database_url), "sqlite:////tmp/x.db")

    def test_embedded_default_database_is_sqlite_under_state_dir(self):
        self.overlay("local", 'db_name: ""\nstate_dir: "/srv/popeye-state"\n')
        url = load_settings(self.dir, "local").database_url
        self.assertEqual(str(url), "sqlite:////srv/popeye-state/popeye.db")

    def test_secrets_never_show_in_the_printed_or_logged_settings(self):
        self.overlay("local", 'notify_token: "notify-token-value"\n')
        s = load_settings(self.dir, "local")
        for shown in (repr(s), str(s), str(s.describe()), s.database_url.render_as_string()):
            for secret in SECRETS + ("notify-token-value",):
                self.assertNotIn(secret, shown)
        self.assertEqual(s.describe()["db_pass"], "***")

    def test_shipped_embedded_default_needs_no_aws_and_no_mysql(self):
        packaged = os.path.join(os.path.dirname(__file__), "..", "etc")
        s = load_settings(packaged, deployment="")
        self.assertEqual((s.storage, s.workflow, s.notifier), ("local", "spool", "log"))
        self.assertEqual(s.database_url.get_backend_name(), "sqlite")
        self.assertEqual(s.aws_endpoint_url, "")

    def test_shipped_overlays_parse_and_carry_no_secret(self):
        packaged = os.path.join(os.path.dirname(__file__), "..", "etc")
        for name in ("prod", "staging"):
            s = load_settings(packaged, deployment=name)
            self.assertEqual((s.storage, s.workflow, s.notifier), ("s3", "swf", "sqs"))
            self.assertEqual(s.database_url.drivername, "mysql+pymysql")
            self.assertEqual((s.db_pass, s.awsSecret), ("", ""))
        self.assertEqual(load_settings(packaged, deployment="local").loglevel, logging.DEBUG)

    def test_config_dir_defaults_to_etc_of_the_working_directory(self):
        write_config(os.path.join(self.dir, "etc"), {"app_name": "x"})
        self.assertEqual(default_config_dir(self.dir), os.path.join(self.dir, "etc"))
        bare = self.mktemp()
        os.makedirs(bare)
        self.assertTrue(os.path.isfile(os.path.join(default_config_dir(bare), "popeye.config")))


class PasswordEscapingOnMariaDBTests(TestCase):
    """A password with ``@``, ``&`` and ``!`` must reach the server intact."""

    def test_db_pass_with_special_characters_connects(self):
        db = MariaDB(self)
        password = "p@ss&w0rd!"
        user = "popeye_" + db.name[-8:]
        db.execute_script(
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';"
            f"GRANT SELECT ON {db.name}.* TO '{user}'@'%'"
        )
        self.addCleanup(db.execute_script, f"DROP USER '{user}'@'%'")
        directory = self.mktemp()
        write_config(
            directory,
            {
                "db_name": db.name,
                "db_user": user,
                "db_pass": password,
                "db_conn": f"@{db.HOST}:{db.PORT}/",
            },
        )
        settings = load_settings(directory, deployment="")
        engine = create_engine(settings.database_url)
        self.addCleanup(engine.dispose)
        with engine.connect() as connection:
            self.assertEqual(connection.execute(text("SELECT CURRENT_USER()")).scalar().split("@")[0], user)


class SettingsObjectTests(TestCase):
    def test_settings_are_immutable(self):
        s = Settings()
        with self.assertRaises(Exception):
            s.storage = "s3"
