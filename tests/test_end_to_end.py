"""Brewtus's exact requests to a real ``twistd popeye``, with a moto server
for S3, SWF and SQS and a real database (SQLite, then MariaDB)."""

import os

from sqlalchemy import func, select
from twisted.trial.unittest import TestCase

from popeye.config import load_settings
from popeye.database import open_database
from popeye.models import Media, MediaAlbum, MediaAsset, MediaWorkflowStage, User
from tests.support import (
    ALBUM,
    ALBUM_UPLOAD,
    ANN,
    BO,
    BUCKET,
    FIXTURES,
    UNICODE_UPLOAD,
    UNKNOWN_USER_UPLOAD,
    MariaDB,
    MotoServer,
    TwistdServer,
    copy_upload,
    embedded_config,
    seed_users,
    wait_until,
    write_config,
)


class EndToEndTests(TestCase):
    def database_url(self) -> str:
        return "sqlite:///" + os.path.join(self.work, "popeye.db")

    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.moto = MotoServer.shared()
        self.moto.prepare(suffix="Staging", task_list="E2E")
        self.config = embedded_config(
            self.work, db_url=self.database_url(), **self.moto.aws_config(VPWSuffix="Staging", UniqueTaskList="E2E")
        )
        self.upload_dir = self.config["upload_dir"]
        config_dir = write_config(os.path.join(self.work, "etc"), self.config)
        self.db = open_database(load_settings(config_dir, ""))
        self.user_ids = seed_users(self.db)
        with self.db() as session, session.begin():
            session.add(Media(uuid=ALBUM, user_id=self.user_ids[ANN], media_type="original", is_album=True))
        self.server = TwistdServer(self.work, config_dir).start(self)

    def notify(self, file_id):
        path = os.path.join(self.upload_dir, file_id)
        return self.server.get_json(f"/processor/process?path={path}&skip_faces=&try_photos=")

    def wait_for_jobs(self, *file_ids):
        def finished():
            left = [n for n in os.listdir(self.upload_dir) if n != "errors"]
            return not any(n.startswith(file_ids) for n in left)

        wait_until(finished, 60, f"jobs {file_ids} to finish", interval=0.1)

    def test_three_brewtus_uploads_end_as_the_legacy_service_left_them(self):
        for file_id in (ALBUM_UPLOAD, UNICODE_UPLOAD, UNKNOWN_USER_UPLOAD):
            path = copy_upload(file_id, self.upload_dir)
            status, reply = self.notify(file_id)
            self.assertEqual((status, reply["full_filename"]), (200, path))
        self.wait_for_jobs(ALBUM_UPLOAD, UNICODE_UPLOAD, UNKNOWN_USER_UPLOAD)

        objects = self.moto.objects()
        for file_id in (ALBUM_UPLOAD, UNICODE_UPLOAD):
            for suffix in ("", ".json", "_metadata.json"):
                key = f"{file_id}/{file_id}{suffix}"
                self.assertEqual(objects.pop(key), (FIXTURES / (file_id + suffix)).read_bytes(), key)
        self.assertEqual(objects, {}, "nothing else is stored")

        executions = {i["execution"]["workflowId"]: i for i in self.moto.open_executions()}
        self.assertEqual(sorted(executions), sorted([ALBUM_UPLOAD, UNICODE_UPLOAD]))
        for file_id, user, title, filename, skip_faces, try_photos in (
            (ALBUM_UPLOAD, ANN, "Beach Day", "C:\\Users\\ann\\Videos\\Beach Day.MOV", True, "existing_user"),
            (UNICODE_UPLOAD, BO, "été 2014", "/home/bo/Vidéos/été 2014.mp4", False, "new_user"),
        ):
            info = executions[file_id]
            self.assertEqual(info["workflowType"], {"name": "VideoProcessingStaging", "version": "1.0.7"})
            with self.db() as session:
                media = session.scalars(select(Media).where(Media.uuid == file_id)).one()
                asset = session.scalars(select(MediaAsset).where(MediaAsset.media_id == media.id)).one()
                stages = session.scalars(
                    select(MediaWorkflowStage.workflow_stage).where(MediaWorkflowStage.media_id == media.id)
                ).all()
                owner = session.get(User, media.user_id).uuid
            self.assertEqual(
                (owner, media.title, media.filename, media.status, media.media_type, media.skip_faces),
                (user, title, filename, "pending", "original", skip_faces),
            )
            self.assertEqual((asset.uri, asset.metadata_uri, asset.bytes, asset.location, asset.asset_type),
                             (f"{file_id}/{file_id}", f"{file_id}/{file_id}_metadata.json", 4096, "us", "original"))
            self.assertEqual(stages, ["PopeyeComplete"])
            document = self.moto.workflow_input(file_id)
            self.assertEqual(
                {k: document[k] for k in ("media_uuid", "user_uuid", "original_uuid", "skip_faces", "try_photos")},
                {"media_uuid": file_id, "user_uuid": user, "original_uuid": asset.uuid,
                 "skip_faces": skip_faces, "try_photos": try_photos},
            )
            self.assertEqual(document["outputs"][0]["output_file"],
                             {"s3_bucket": BUCKET, "s3_key": f"{file_id}/{file_id}_output.mp4"})
        decision = self.moto.client("swf").poll_for_decision_task(
            domain="Viblio", taskList={"name": "VPDeciderStagingE2E"}
        )
        self.assertIn(decision["workflowExecution"]["workflowId"], executions)

        with self.db() as session:
            album_links = session.execute(select(MediaAlbum.album_id, MediaAlbum.media_id)).all()
            album_id = session.scalar(select(Media.id).where(Media.uuid == ALBUM))
            album_media = session.scalar(select(Media.id).where(Media.uuid == ALBUM_UPLOAD))
        self.assertEqual(album_links, [(album_id, album_media)])

        self.assertEqual(os.listdir(self.upload_dir), ["errors"])
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.upload_dir, "errors"))),
            sorted([p.name for p in FIXTURES.glob(UNKNOWN_USER_UPLOAD + "*")] + [UNKNOWN_USER_UPLOAD + ".log"]),
        )
        with open(os.path.join(self.upload_dir, "errors", UNKNOWN_USER_UPLOAD + ".log"), encoding="utf-8") as log:
            self.assertIn("failed at step check_duplicates", log.read())

    def test_the_same_notification_twice_gives_one_row_and_one_execution(self):
        copy_upload(UNICODE_UPLOAD, self.upload_dir)
        first = self.notify(UNICODE_UPLOAD)
        second = self.notify(UNICODE_UPLOAD)
        self.assertEqual(first[0], 200)
        # The second finds the job queued or running, or the upload already gone.
        self.assertIn(second, [
            (200, dict(first[1], job="already queued")),
            (200, dict(first[1], job="already running")),
            (404, {"error": True, "message": "file not found"}),
        ])
        self.wait_for_jobs(UNICODE_UPLOAD)
        with self.db() as session:
            self.assertEqual(session.scalar(select(func.count()).select_from(Media).where(Media.uuid == UNICODE_UPLOAD)), 1)
        self.assertEqual([i["execution"]["workflowId"] for i in self.moto.open_executions()], [UNICODE_UPLOAD])
        self.assertFalse(os.path.exists(os.path.join(self.upload_dir, "errors")))


class EndToEndOnMariaDBTests(EndToEndTests):
    def database_url(self) -> str:
        return MariaDB(self).url
