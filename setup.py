"""Popeye: the upload-to-pipeline service (drop-in for the legacy Popeye).

`etc/` is installed as the package ``popeye.etc`` so that a plain
``pip install .`` carries the embedded default configuration, and
``twisted/plugins/popeye_plugin.py`` is installed into Twisted's plugin
directory so that ``twistd popeye`` works without an editable checkout.
"""

from setuptools import setup

setup(
    name="popeye",
    version="2.0.0",
    description="Copies finished uploads to S3, records them and starts the video workflow",
    python_requires=">=3.11",
    packages=["popeye", "popeye.web", "popeye.etc", "twisted.plugins"],
    package_dir={"popeye.etc": "etc"},
    package_data={"popeye.etc": ["*.config", "apache/*", "systemd/*", "logrotate/*"]},
    install_requires=[
        "Twisted>=23.10",
        "boto3>=1.28,<2",
        "SQLAlchemy>=2.0,<2.2",
        "PyMySQL>=1.1,<2",
        "config>=0.4.2,<0.5",
        "crochet>=2.1,<3",
        "tenacity>=8.2,<10",
        "prometheus_client>=0.17,<1",
        "rich>=13,<15",
    ],
    entry_points={"console_scripts": ["popeye-admin = popeye.cli:main"]},
    extras_require={
        "test": [
            "moto[server]>=5,<6",
            "hypothesis>=6.100",
        ],
        "bench": [
            "moto[server]>=5,<6",
            "awscli>=1.30",
            "gunicorn>=22",
            "matplotlib>=3.7",
        ],
    },
)
