"""Finding uploads whose notification never came.

Brewtus never retries a failed notification, so an upload finished while
Popeye was down, or whose request was lost, would wait forever.  The sweeper
looks for uploads that Brewtus finished (info ``offset == finalLength`` and
the file has that size) and that have been quiet for ``sweep_age`` seconds;
the runner queues those the journal does not know.
"""

import os
import time
from collections.abc import Iterator

from popeye.uploads import COMPANION_SUFFIXES, Upload, is_complete


def finished_uploads(upload_dir: str, min_age: float, now: float | None = None) -> Iterator[Upload]:
    """Complete uploads directly in ``upload_dir``, quiet for ``min_age`` seconds.

    Files come and go while it looks (jobs remove theirs): one that vanishes
    is simply not yielded.
    """
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(upload_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name.endswith(COMPANION_SUFFIXES):
            continue
        try:
            regular = entry.is_file(follow_symlinks=False)
        except OSError:
            continue
        upload = Upload(entry.path)
        if regular and is_complete(upload) and _quiet_since(upload, now - min_age):
            yield upload


def _quiet_since(upload: Upload, moment: float) -> bool:
    try:
        return all(os.stat(p).st_mtime <= moment for p in (upload.path, upload.info_path, upload.metadata_path))
    except FileNotFoundError:
        return False
