"""Object store for originals: S3 in production, a local directory embedded.

Both keep an object under the same key (``<uuid>/<uuid>``...), so a put is
idempotent: repeating it after a crash writes the same object again.
"""

import os
import tempfile
from collections.abc import Callable
from typing import Protocol

from boto3.s3.transfer import TransferConfig

from popeye import aws
from popeye.config import Settings

MiB = 1024 * 1024

Progress = Callable[[int], None]


class ObjectStore(Protocol):
    def put(self, key: str, path: str, progress: Progress | None = None) -> None: ...

    def delete(self, key: str) -> None: ...


class S3Store:
    """S3 through boto3's transfer manager: multipart above the threshold,
    with memory bounded by ``max_concurrency`` x ``multipart_chunksize``."""

    transfer = TransferConfig(
        multipart_threshold=16 * MiB,
        multipart_chunksize=16 * MiB,
        max_concurrency=4,
        use_threads=True,
    )

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def put(self, key: str, path: str, progress: Progress | None = None) -> None:
        self.client.upload_file(path, self.bucket, key, Config=self.transfer, Callback=progress)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


class LocalStore:
    """Objects as files under ``root``; written to a temporary name and
    renamed, so a reader never sees half an object."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)

    def path_for(self, key: str) -> str:
        path = os.path.realpath(os.path.join(self.root, key))
        if os.path.commonpath([path, self.root]) != self.root or path == self.root:
            raise ValueError(f"object key {key!r} leaves the storage directory")
        return path

    def put(self, key: str, path: str, progress: Progress | None = None) -> None:
        target = self.path_for(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(path, "rb") as source, tempfile.NamedTemporaryFile(
            dir=os.path.dirname(target), prefix=".put-", delete=False
        ) as temp:
            try:
                while chunk := source.read(8 * MiB):
                    temp.write(chunk)
                    if progress:
                        progress(len(chunk))
                temp.flush()
                os.fsync(temp.fileno())
            except BaseException:
                os.unlink(temp.name)
                raise
        os.replace(temp.name, target)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path_for(key))
        except FileNotFoundError:
            pass


def from_settings(settings: Settings) -> ObjectStore:
    if settings.storage == "s3":
        return S3Store(aws.client(settings, "s3"), settings.bucket_name)
    return LocalStore(settings.local_storage_dir)
