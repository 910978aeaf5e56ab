"""A plain (not editable) ``pip install .`` carries everything twistd needs."""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from tests.support import copy_checkout


class InstallTests(TestCase):
    def test_non_editable_install_makes_twistd_list_popeye(self):
        scratch = os.path.abspath(self.mktemp())
        target = os.path.join(scratch, "site")
        source = copy_checkout(scratch)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--target", target, str(source)],
            check=True,
            capture_output=True,
        )
        self.assertTrue(os.path.isfile(os.path.join(target, "twisted", "plugins", "popeye_plugin.py")))
        self.assertTrue(os.path.isfile(os.path.join(target, "popeye", "etc", "popeye.config")))
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "__init__.py")),
                         "the install must not shadow Twisted itself")
        listing = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            cwd=scratch,
            env=dict(os.environ, PYTHONPATH=target),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.assertRegex(listing, r"\n\s+popeye\s+Copies finished uploads to S3")
