"""Finding uploads whose notification never came.

Brewtus never retries a failed notification, so an upload finished while
Popeye was down, or whose request was lost, would wait forever.  The sweeper
looks for uploads that Brewtus finished (info ``offset == finalLength`` and
the file has that size) and that have been quiet for ``sweep_age`` seconds;
the runner queues those the journal does not know.
"""

import json
import os
import time
from collections.abc import Iterator

from popeye.uploads import COMPANION_SUFFIXES, Upload


def finished_uploads(upload_dir: str, min_age: float, now: float | None = None) -> Iterator[Upload]:
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(upload_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(COMPANION_SUFFIXES) or not entry.is_file(follow_symlinks=False):
            continue
        upload = Upload(entry.path)
        if _finished(upload, entry.stat().st_size) and _quiet_since(upload, now - min_age):
            yield upload


def _finished(upload: Upload, size: int) -> bool:
    try:
        with open(upload.info_path, "rb") as stream:
            info = json.loads(stream.read().decode("utf-8", errors="ignore"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or not os.path.isfile(upload.metadata_path):
        return False
    length = info.get("finalLength")
    return isinstance(length, int) and info.get("offset") == length == size


def _quiet_since(upload: Upload, moment: float) -> bool:
    try:
        return all(os.stat(p).st_mtime <= moment for p in (upload.path, upload.info_path, upload.metadata_path))
    except FileNotFoundError:
        return False
