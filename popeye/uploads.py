"""An upload as Brewtus leaves it on disk, and the rules for accepting one.

The legacy service trusted ``path``: any readable file on the host could be
sent to S3.  :func:`confine` accepts only a regular file directly inside the
configured upload directory, after following symlinks.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass

#: Files a job writes or reads beside the upload; never an upload themselves.
COMPANION_SUFFIXES = (".json", ".lock", ".log")


class Refused(ValueError):
    """The path cannot be processed; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Upload:
    """The three files of one upload: ``<fileId>``, ``<fileId>.json`` (info)
    and ``<fileId>_metadata.json`` (metadata), plus the job's own lock and log."""

    path: str

    @property
    def base(self) -> str:
        return os.path.splitext(self.path)[0]

    @property
    def uuid(self) -> str:
        """The media uuid: the upload's file name without extension."""
        return os.path.basename(self.base)

    @property
    def info_path(self) -> str:
        return self.base + ".json"

    @property
    def metadata_path(self) -> str:
        return self.base + "_metadata.json"

    @property
    def log_path(self) -> str:
        return self.base + ".log"

    @property
    def lock_path(self) -> str:
        return self.path + ".lock"


class UploadRoot:
    """The upload directory, resolved once: its real path, and its identity
    (device and inode) to recognise it by whatever path leads there."""

    def __init__(self, upload_dir: str):
        self.path = os.path.realpath(upload_dir)
        self._identity: tuple[int, int] | None = None

    def is_itself(self, directory: str) -> bool:
        """Whether ``directory`` (symlinks followed) is the upload directory:
        two stat calls, where ``realpath`` walks every component in Python
        (it was a fifth of the route's time under load)."""
        try:
            if self._identity is None:
                found = os.stat(self.path)
                self._identity = (found.st_dev, found.st_ino)
            found = os.stat(directory)
        except (OSError, ValueError):
            return False
        return (found.st_dev, found.st_ino) == self._identity


def confine(raw_path: str, root: UploadRoot) -> Upload:
    """The Upload for ``raw_path`` if it names a file Popeye may process.

    Refuses, with a reason: NUL bytes, relative paths, ``..`` segments, a path
    whose real location (symlinks followed) is not directly inside the upload
    directory, a job's companion file, and a missing or non-regular file.
    """
    if "\x00" in raw_path:
        raise Refused("path contains a NUL byte")
    if not os.path.isabs(raw_path):
        raise Refused("path must be absolute")
    if ".." in raw_path.replace("\\", "/").split("/"):
        raise Refused("path must not contain '..' segments")
    parent, name = os.path.split(raw_path)
    if not name or not root.is_itself(parent):
        raise Refused("path is not inside the upload directory", status=403)
    real = os.path.join(root.path, name)
    if os.path.islink(real):
        real = os.path.realpath(real)
        if os.path.dirname(real) != root.path:
            raise Refused("path is not inside the upload directory", status=403)
    if real.endswith(COMPANION_SUFFIXES):
        raise Refused("path names a job's companion file, not an upload")
    if not os.path.isfile(real):
        raise Refused("file not found", status=404)
    return Upload(real)


def is_complete(upload: Upload) -> bool:
    """Brewtus has finished writing it: info ``offset == finalLength``, the
    file has that size, and the metadata file exists.  An early or stray
    notification must not hash, store or move a file still being written."""
    try:
        with open(upload.info_path, "rb") as stream:
            info = json.loads(stream.read().decode("utf-8", errors="ignore"))
        size = os.stat(upload.path).st_size
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or not os.path.isfile(upload.metadata_path):
        return False
    length = info.get("finalLength")
    return isinstance(length, int) and info.get("offset") == length == size


def write_upload(upload_dir: str, file_id: str, source: str, uid: str, client_path: str,
                 link: bool = False) -> Upload:
    """Lay down an upload as Brewtus does (see ``shared/fixtures``): the bytes
    of ``source`` (copied, or hard-linked with ``link``), its info JSON and
    the client's metadata JSON.  For trying Popeye without Brewtus."""
    os.makedirs(upload_dir, exist_ok=True)
    upload = Upload(os.path.join(upload_dir, file_id))
    (os.link if link else shutil.copyfile)(source, upload.path)
    size = os.path.getsize(upload.path)
    now = int(time.time() * 1000)
    info = {"uid": uid, "fileId": file_id, "fileExt": os.path.splitext(client_path)[1] or ".unknown",
            "finalLength": size, "state": "patched", "createdOn": now, "offset": size, "patchedOn": now,
            "bytesReceived": size}
    metadata = {"file": {"Path": client_path, "Size": size}, "skip_faces": False, "try_photos": False}
    for path, document in ((upload.info_path, info), (upload.metadata_path, metadata)):
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(document, stream, ensure_ascii=False)
    return upload


def uploads_in_errors(upload_dir: str) -> list[str]:
    """The file ids of failed uploads in ``errors/`` (a file with its info beside it)."""
    errors = os.path.join(upload_dir, "errors")
    names = os.listdir(errors) if os.path.isdir(errors) else []
    return sorted(n for n in names if n + ".json" in names)


def _companions(file_id: str) -> tuple[str, ...]:
    return (file_id, file_id + ".json", file_id + "_metadata.json", file_id + ".log")


def return_to_errors(upload_dir: str, file_id: str) -> None:
    """Undo :func:`restore_from_errors` when the upload could not be queued,
    so it stays where retries look for it."""
    errors = os.path.join(upload_dir, "errors")
    for name in _companions(file_id):
        if os.path.exists(os.path.join(upload_dir, name)):
            os.rename(os.path.join(upload_dir, name), os.path.join(errors, name))


def restore_from_errors(upload_dir: str, file_id: str) -> str:
    """Move a failed upload's files back from ``errors/``; its path.

    Refuses (leaving everything in place) when the upload is not there or a
    file of the same name already waits in the upload directory.
    """
    errors = os.path.join(upload_dir, "errors")
    if file_id not in uploads_in_errors(upload_dir):
        raise Refused(f"{file_id} is not in {errors}", status=404)
    names = [n for n in _companions(file_id) if os.path.exists(os.path.join(errors, n))]
    for name in names:
        if os.path.exists(os.path.join(upload_dir, name)):
            raise Refused(f"{os.path.join(upload_dir, name)} exists; not overwriting it", status=409)
    for name in names:
        os.rename(os.path.join(errors, name), os.path.join(upload_dir, name))
    return os.path.join(upload_dir, file_id)
