"""Makes ``twistd popeye`` available; the service lives in :mod:`popeye.tap`."""

from twisted.application.service import ServiceMaker

popeye = ServiceMaker(
    "Popeye",
    "popeye.tap",
    "Copies finished uploads to S3, records them and starts the video workflow",
    "popeye",
)
