"""Whole jobs through the JobRunner against a real moto server (S3, SWF, SQS)
and a real database: every branch of step 6, the album rules of step 9 and
the failure paths (SPEC section 3)."""

import os
from datetime import datetime

from sqlalchemy import func, select
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from popeye import logs
from popeye.config import load_settings
from popeye.database import open_database
from popeye.jobs import JobRunner
from popeye.journal import Journal
from popeye.models import (
    Community,
    Contact,
    ContactGroup,
    Media,
    MediaAlbum,
    MediaAsset,
    MediaWorkflowStage,
)
from popeye.uploads import Upload
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
    copy_upload,
    embedded_config,
    fixture_md5,
    seed_users,
    write_config,
)

OLD = datetime(2014, 1, 1)


class PipelineCase(TestCase):
    """A runner on SQLite; see the MariaDB subclasses at the end."""

    def database_url(self) -> str:
        return "sqlite:///" + os.path.join(self.work, "popeye.db")

    def setUp(self):
        self.work = os.path.abspath(self.mktemp())
        self.moto = MotoServer.shared()
        self.moto.prepare()
        self.config = embedded_config(self.work, db_url=self.database_url(), **self.moto.aws_config())
        self.upload_dir = self.config["upload_dir"]
        self.errors_dir = os.path.join(self.upload_dir, "errors")
        self.settings = load_settings(write_config(os.path.join(self.work, "etc"), self.config), "")
        logs.configure(self.settings.logfile, self.settings.loglevel, logs.TwistedLogHandler())
        self.db = open_database(self.settings)
        self.user_ids = seed_users(self.db)
        self.journal = Journal(os.path.join(self.settings.state_dir, "journal.db"))
        self.runner = JobRunner(self.settings, self.db, self.journal, reactor)
        self.runner.startService()
        self.addCleanup(self.runner.stopService)

    @inlineCallbacks
    def process(self, file_id: str):
        path = copy_upload(file_id, self.upload_dir)
        self.assertEqual(self.runner.submit(Upload(path)), "queued")
        yield self.runner.wait(file_id)

    def add_media(self, uuid, status, user=ANN, unique_hash=None, **columns):
        with self.db() as session, session.begin():
            media = Media(
                uuid=uuid,
                user_id=self.user_ids[user],
                media_type="original",
                status=status,
                unique_hash=unique_hash if unique_hash is not None else fixture_md5(),
                title=f"earlier {uuid}",
                created_date=OLD,
                **columns,
            )
            session.add(media)
            session.flush()
            return media.id

    def add_asset(self, media_id, asset_type, uri, user=ANN):
        with self.db() as session, session.begin():
            session.add(
                MediaAsset(
                    uuid=f"asset-{media_id}-{asset_type}",
                    media_id=media_id,
                    user_id=self.user_ids[user],
                    asset_type=asset_type,
                    uri=uri,
                )
            )

    def media(self, uuid):
        with self.db() as session:
            return session.scalars(select(Media).where(Media.uuid == uuid)).one_or_none()

    def count(self, model, *where):
        with self.db() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))

    def read_log(self):
        with open(self.config["logfile"], encoding="utf-8") as log:
            return log.read()

    def assertUploadGone(self, file_id):
        self.assertEqual([n for n in os.listdir(self.upload_dir) if n.startswith(file_id)], [])

    def assertInErrors(self, file_id):
        """All of the upload's files are in errors/, none left beside it, no lock."""
        moved = sorted(os.listdir(self.errors_dir))
        expected = sorted(p.name for p in FIXTURES.glob(file_id + "*")) + [file_id + ".log"]
        for name in expected:
            self.assertIn(name, moved)
        for name in expected:
            if name.endswith(".log"):
                continue
            with open(os.path.join(self.errors_dir, name), "rb") as moved_file:
                self.assertEqual(moved_file.read(), (FIXTURES / name).read_bytes())
        self.assertUploadGone(file_id)

    def assertNothingStarted(self):
        self.assertEqual(self.moto.objects(), {})
        self.assertEqual(self.moto.open_executions(), [])


class HappyPathTests(PipelineCase):
    @inlineCallbacks
    def test_new_upload_reaches_s3_database_and_workflow(self):
        yield self.process(UNICODE_UPLOAD)
        u = UNICODE_UPLOAD
        objects = self.moto.objects()
        self.assertEqual(sorted(objects), [f"{u}/{u}", f"{u}/{u}.json", f"{u}/{u}_metadata.json"])
        for key, name in ((f"{u}/{u}", u), (f"{u}/{u}.json", u + ".json"), (f"{u}/{u}_metadata.json", u + "_metadata.json")):
            self.assertEqual(objects[key], (FIXTURES / name).read_bytes())

        media = self.media(u)
        self.assertEqual(
            (media.media_type, media.filename, media.title, media.view_count, media.status, media.skip_faces),
            ("original", "/home/bo/Vidéos/été 2014.mp4", "été 2014", 0, "pending", False),
        )
        self.assertEqual((media.unique_hash, media.user_id), (fixture_md5(), self.user_ids[BO]))
        with self.db() as session:
            [asset] = session.scalars(select(MediaAsset).where(MediaAsset.media_id == media.id)).all()
            [stage] = session.scalars(select(MediaWorkflowStage).where(MediaWorkflowStage.media_id == media.id)).all()
        self.assertEqual(
            (asset.asset_type, asset.uri, asset.metadata_uri, asset.bytes, asset.location, asset.view_count, asset.user_id),
            ("original", f"{u}/{u}", f"{u}/{u}_metadata.json", 4096, "us", 0, self.user_ids[BO]),
        )
        self.assertEqual((stage.workflow_stage, stage.user_id), ("PopeyeComplete", self.user_ids[BO]))

        document = self.moto.workflow_input(u)
        self.assertEqual(
            (document["media_uuid"], document["user_uuid"], document["original_uuid"]), (u, BO, asset.uuid)
        )
        self.assertEqual((document["skip_faces"], document["try_photos"]), (False, "new_user"))
        self.assertEqual(document["input_file"], {"s3_bucket": BUCKET, "s3_key": f"{u}/{u}"})
        self.assertUploadGone(u)
        self.assertFalse(os.path.exists(self.errors_dir))
        log = self.read_log()
        for event in ("070_store_s3_completed", "080_store_db_completed", "090_new_pipeline_callout"):
            self.assertIn(f"{u}: event {event}", log)

    @inlineCallbacks
    def test_job_log_uses_the_legacy_format_and_names_the_job_logger(self):
        yield self.process(UNICODE_UPLOAD)
        line = next(l for l in self.read_log().splitlines() if "event 070_store_s3_completed" in l)
        self.assertRegex(
            line,
            rf"^popeye\.{UNICODE_UPLOAD}: worker : \d+ *: event +: \d{{4}}-\d\d-\d\d [\d:,]+: INFO : ",
        )

    @inlineCallbacks
    def test_a_second_notification_while_queued_does_not_start_a_second_job(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.assertEqual(self.runner.submit(Upload(path)), "queued")
        self.assertIn(self.runner.submit(Upload(path)), ("already queued", "already running"))
        yield self.runner.wait(UNICODE_UPLOAD)
        self.assertEqual(self.count(Media), 1)
        self.assertEqual(len(self.moto.open_executions()), 1)


class DuplicateTests(PipelineCase):
    """Step 6: the user already has a media with the same MD5."""

    @inlineCallbacks
    def check_stopped_as_duplicate(self, file_id=UNICODE_UPLOAD):
        yield self.process(file_id)
        self.assertIsNone(self.media(file_id))
        self.assertNothingStarted()
        self.assertUploadGone(file_id)
        self.assertFalse(os.path.exists(self.errors_dir))
        self.assertIn(f"{file_id}: event Duplicate Video Skipped", self.read_log())

    @inlineCallbacks
    def test_visible_or_complete_duplicate_sends_the_existing_notice_and_touches_the_original(self):
        for number, status in enumerate(("visible", "complete")):
            self.moto.messages()
            earlier = f"earlier-{status}"
            media_id = self.add_media(earlier, status, user=BO)
            self.add_asset(media_id, "poster", f"{earlier}/{earlier}_poster.png", user=BO)
            yield self.check_stopped_as_duplicate()
            [message] = self.moto.messages()
            self.assertEqual(message["template"], "email/24-uploadExisting.tt")
            self.assertEqual(message["to"], [{"email": "bo@example.com", "name": "Bo"}])
            self.assertEqual(
                message["stash"]["model"]["media"],
                [{"uuid": earlier, "views": {"poster": {"uri": f"{earlier}/{earlier}_poster.png"}}, "title": f"earlier {earlier}"}],
            )
            self.assertEqual(message["stash"]["filename"], "/home/bo/Vidéos/été 2014.mp4")
            self.assertGreater(self.media(earlier).created_date, OLD)
            with self.db() as session, session.begin():  # one duplicate at a time
                session.execute(Media.__table__.update().where(Media.uuid == earlier).values(unique_hash="x"))

    @inlineCallbacks
    def test_pending_duplicate_sends_the_pending_notice_without_poster(self):
        self.add_media("earlier", "pending", user=BO)
        yield self.check_stopped_as_duplicate()
        [message] = self.moto.messages()
        self.assertEqual(message["template"], "email/25-uploadPending.tt")
        self.assertEqual(message["stash"]["model"]["media"], [{"uuid": "earlier", "title": "earlier earlier"}])
        self.assertEqual(self.media("earlier").created_date, OLD)

    @inlineCallbacks
    def test_duplicate_with_another_status_stops_silently(self):
        self.add_media("earlier", "processing", user=BO)
        yield self.check_stopped_as_duplicate()
        self.assertEqual(self.moto.messages(), [])

    @inlineCallbacks
    def test_several_duplicates_stop_silently(self):
        self.add_media("earlier-1", "visible", user=BO)
        self.add_media("earlier-2", "failed", user=BO)
        yield self.check_stopped_as_duplicate()
        self.assertEqual(self.moto.messages(), [])
        self.assertEqual(self.count(Media), 2)

    @inlineCallbacks
    def test_failed_duplicate_is_deleted_with_its_objects_and_the_upload_goes_on(self):
        media_id = self.add_media("earlier", "failed", user=BO)
        s3 = self.moto.client("s3")
        for key in ("earlier/earlier", "earlier/earlier_poster.png"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"old")
        self.add_asset(media_id, "original", "earlier/earlier", user=BO)
        self.add_asset(media_id, "poster", "earlier/earlier_poster.png", user=BO)
        yield self.process(UNICODE_UPLOAD)
        self.assertIsNone(self.media("earlier"))
        self.assertEqual(self.count(MediaAsset, MediaAsset.media_id == media_id), 0)
        self.assertEqual([k for k in self.moto.objects() if k.startswith("earlier/")], [])
        self.assertEqual(self.media(UNICODE_UPLOAD).status, "pending")
        self.assertEqual(len(self.moto.open_executions()), 1)
        self.assertUploadGone(UNICODE_UPLOAD)

    @inlineCallbacks
    def test_same_video_of_another_user_is_not_a_duplicate(self):
        self.add_media("anns", "visible", user=ANN)
        yield self.process(UNICODE_UPLOAD)
        self.assertEqual(self.media(UNICODE_UPLOAD).status, "pending")
        self.assertEqual(self.moto.messages(), [])

    @inlineCallbacks
    def test_a_row_left_by_an_earlier_attempt_of_the_same_job_is_not_a_duplicate(self):
        media_id = self.add_media(UNICODE_UPLOAD, "pending", user=BO)
        self.add_asset(media_id, "original", f"{UNICODE_UPLOAD}/{UNICODE_UPLOAD}", user=BO)
        yield self.process(UNICODE_UPLOAD)
        self.assertEqual(self.count(Media), 1)
        document = self.moto.workflow_input(UNICODE_UPLOAD)
        self.assertEqual(document["original_uuid"], f"asset-{media_id}-original")
        self.assertUploadGone(UNICODE_UPLOAD)


class RerunTests(PipelineCase):
    """A job run again after an earlier attempt got past store_db."""

    @inlineCallbacks
    def test_own_row_wins_over_a_later_upload_of_the_same_video(self):
        own = self.add_media(UNICODE_UPLOAD, "pending", user=BO)
        self.add_asset(own, "original", f"{UNICODE_UPLOAD}/{UNICODE_UPLOAD}", user=BO)
        self.add_media("uploaded-since", "visible", user=BO)
        yield self.process(UNICODE_UPLOAD)
        self.assertEqual(self.moto.messages(), [], "not a duplicate of the later one")
        self.assertEqual(len(self.moto.open_executions()), 1)
        self.assertUploadGone(UNICODE_UPLOAD)
        self.assertEqual(self.journal.get(UNICODE_UPLOAD)["state"], "done")

    @inlineCallbacks
    def test_a_workflow_that_already_ran_is_not_started_again(self):
        own = self.add_media(UNICODE_UPLOAD, "visible", user=BO)
        self.add_asset(own, "original", f"{UNICODE_UPLOAD}/{UNICODE_UPLOAD}", user=BO)
        yield self.process(UNICODE_UPLOAD)
        self.assertEqual(self.moto.open_executions(), [])
        self.assertIn("the workflow already ran for this media", self.read_log())
        self.assertUploadGone(UNICODE_UPLOAD)

    @inlineCallbacks
    def test_a_job_started_too_often_fails_instead_of_running_again(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.journal.admit(UNICODE_UPLOAD, path, 100)
        for _ in range(10):
            self.journal.started(UNICODE_UPLOAD)
        self.journal.requeued(UNICODE_UPLOAD)  # as the last of ten interrupted runs left it
        yield self.runner.sweep()  # picks up the queued entry no runner holds
        yield self.runner.wait(UNICODE_UPLOAD)
        self.assertEqual(self.journal.get(UNICODE_UPLOAD)["state"], "failed")
        self.assertIn("started 10 times without ending; giving up", self.journal.get(UNICODE_UPLOAD)["last_error"])
        self.assertInErrors(UNICODE_UPLOAD)
        self.assertNothingStarted()


class SweepTests(PipelineCase):
    @inlineCallbacks
    def test_a_queued_entry_no_runner_holds_is_picked_up(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.journal.admit(UNICODE_UPLOAD, path, 100)  # as a dying process would leave it
        yield self.runner.sweep()
        yield self.runner.wait(UNICODE_UPLOAD)
        self.assertEqual(self.journal.get(UNICODE_UPLOAD)["state"], "done")

    @inlineCallbacks
    def test_an_upload_left_busy_by_another_process_is_taken_again(self):
        path = copy_upload(UNICODE_UPLOAD, self.upload_dir)
        self.journal.admit(UNICODE_UPLOAD, path, 100)
        self.journal.finished(UNICODE_UPLOAD, "busy", "another job holds the upload's lock")
        for name in os.listdir(self.upload_dir):  # quiet for longer than sweep_age
            os.utime(os.path.join(self.upload_dir, name), (0, 0))
        yield self.runner.sweep()
        yield self.runner.wait(UNICODE_UPLOAD)
        self.assertEqual(self.journal.get(UNICODE_UPLOAD)["state"], "done")
        self.assertEqual(len(self.moto.open_executions()), 1)


class AlbumTests(PipelineCase):
    """Step 9: the album link, when the user may add to that album."""

    def share_album(self, album_id, member_email):
        """A community of Bo's around the album, whose members group holds a
        contact with ``member_email``."""
        with self.db() as session, session.begin():
            contact = Contact(contact_email=member_email)
            session.add(contact)
            session.flush()
            session.add_all(
                [
                    ContactGroup(group_id=77, contact_id=contact.id),
                    Community(uuid="c-1", user_id=self.user_ids[BO], media_id=album_id, members_id=77),
                ]
            )

    def links(self):
        with self.db() as session:
            return session.execute(select(MediaAlbum.album_id, MediaAlbum.media_id)).all()

    @inlineCallbacks
    def test_album_owned_by_the_user_gets_the_media(self):
        album_id = self.add_media(ALBUM, "visible", user=ANN, unique_hash="", is_album=True)
        yield self.process(ALBUM_UPLOAD)
        media = self.media(ALBUM_UPLOAD)
        self.assertEqual(self.links(), [(album_id, media.id)])
        self.assertEqual((media.title, media.skip_faces), ("Beach Day", True))
        document = self.moto.workflow_input(ALBUM_UPLOAD)
        self.assertEqual((document["skip_faces"], document["try_photos"]), (True, "existing_user"))

    @inlineCallbacks
    def test_album_shared_with_the_user_through_a_community_gets_the_media(self):
        album_id = self.add_media(ALBUM, "visible", user=BO, unique_hash="", is_album=True)
        self.share_album(album_id, "ann@example.com")
        yield self.process(ALBUM_UPLOAD)
        self.assertEqual(self.links(), [(album_id, self.media(ALBUM_UPLOAD).id)])

    @inlineCallbacks
    def test_album_of_someone_else_not_shared_is_left_alone_with_a_warning(self):
        album_id = self.add_media(ALBUM, "visible", user=BO, unique_hash="", is_album=True)
        self.share_album(album_id, "someone-else@example.com")
        yield self.process(ALBUM_UPLOAD)
        self.assertEqual(self.links(), [])
        self.assertEqual(self.media(ALBUM_UPLOAD).status, "pending")
        self.assertIn(f"not added to album {ALBUM}", self.read_log())

    @inlineCallbacks
    def test_unknown_album_is_left_alone_with_a_warning(self):
        yield self.process(ALBUM_UPLOAD)
        self.assertEqual(self.links(), [])
        self.assertIsNotNone(self.media(ALBUM_UPLOAD))
        self.assertIn(f"not added to album {ALBUM}", self.read_log())
        self.assertUploadGone(ALBUM_UPLOAD)


class FailureTests(PipelineCase):
    """Each failure ends in errors/ with every file, the lock released and a
    log line naming the step."""

    @inlineCallbacks
    def check_failed(self, file_id, step, prepare=lambda path: None):
        path = copy_upload(file_id, self.upload_dir)
        prepare(path)
        self.runner.submit(Upload(path))
        yield self.runner.wait(file_id)
        self.assertFalse(os.path.exists(path + ".lock"))
        self.assertRegex(self.read_log(), rf"{file_id}: failed at step {step}: .+")
        return sorted(os.listdir(self.errors_dir))

    @inlineCallbacks
    def test_missing_info_file(self):
        moved = yield self.check_failed(UNICODE_UPLOAD, "check_files", lambda p: os.unlink(p + ".json"))
        self.assertEqual(moved, [UNICODE_UPLOAD, UNICODE_UPLOAD + ".log", UNICODE_UPLOAD + "_metadata.json"])
        self.assertNothingStarted()

    @inlineCallbacks
    def test_missing_metadata_file(self):
        moved = yield self.check_failed(UNICODE_UPLOAD, "check_files", lambda p: os.unlink(p + "_metadata.json"))
        self.assertEqual(moved, [UNICODE_UPLOAD, UNICODE_UPLOAD + ".json", UNICODE_UPLOAD + ".log"])

    @inlineCallbacks
    def test_malformed_info_json(self):
        def corrupt(path):
            with open(path + ".json", "w") as f:
                f.write("{not json")

        yield self.check_failed(UNICODE_UPLOAD, "parse_files", corrupt)
        self.assertIn(UNICODE_UPLOAD + ".json", os.listdir(self.errors_dir))
        self.assertNothingStarted()

    @inlineCallbacks
    def test_symlinked_companion_is_not_followed(self):
        secret = os.path.join(self.work, "secret.json")
        with open(secret, "w") as f:
            f.write('{"uid": "%s"}' % ANN)

        def link_info(path):
            os.unlink(path + ".json")
            os.symlink(secret, path + ".json")

        yield self.check_failed(UNICODE_UPLOAD, "check_files", link_info)
        self.assertIn("is a symlink; refusing to follow it", self.read_log())
        self.assertNothingStarted()

    @inlineCallbacks
    def test_an_upload_swapped_for_a_symlink_while_queued_is_not_followed(self):
        secret = os.path.join(self.work, "secret")
        with open(secret, "w") as f:
            f.write("not for upload")

        def swap(path):
            os.unlink(path)
            os.symlink(secret, path)

        yield self.check_failed(UNICODE_UPLOAD, "check_files", swap)
        self.assertIn("main file", self.read_log())
        self.assertNothingStarted()

    @inlineCallbacks
    def test_a_second_failure_keeps_the_first_ones_files(self):
        yield self.check_failed(UNKNOWN_USER_UPLOAD, "check_duplicates")
        yield self.check_failed(UNKNOWN_USER_UPLOAD, "check_duplicates")
        logs = [n for n in os.listdir(self.errors_dir) if n.startswith(UNKNOWN_USER_UPLOAD + ".log")]
        self.assertEqual(len(logs), 2, os.listdir(self.errors_dir))

    @inlineCallbacks
    def test_unknown_user(self):
        yield self.check_failed(UNKNOWN_USER_UPLOAD, "check_duplicates")
        self.assertInErrors(UNKNOWN_USER_UPLOAD)
        self.assertIn("no single user with uuid 'unknown'", self.read_log())
        self.assertNothingStarted()
        self.assertEqual(self.count(Media), 0)


class RefusingEndpointTests(PipelineCase):
    def setUp(self):
        super().setUp()
        self.runner.stopService()

    def restart(self, **overrides):
        config = dict(self.config, **overrides)
        self.settings = load_settings(write_config(os.path.join(self.work, "etc"), config), "")
        self.runner = JobRunner(self.settings, self.db, self.journal, reactor)
        self.runner.startService()
        self.addCleanup(self.runner.stopService)

    @inlineCallbacks
    def test_s3_refusing_the_bucket(self):
        self.restart(bucket_name="no-such-bucket")
        yield self.process(UNICODE_UPLOAD)
        self.assertRegex(self.read_log(), rf"{UNICODE_UPLOAD}: failed at step store_s3: .*NoSuchBucket")
        self.assertInErrors(UNICODE_UPLOAD)
        self.assertEqual(self.count(Media), 0)
        self.assertEqual(self.moto.open_executions(), [])

    @inlineCallbacks
    def test_workflow_endpoint_refusing_an_unregistered_domain(self):
        self.moto.prepare(swf=False)
        self.restart()
        yield self.process(UNICODE_UPLOAD)
        self.assertRegex(self.read_log(), rf"{UNICODE_UPLOAD}: failed at step start_workflow: .+")
        self.assertInErrors(UNICODE_UPLOAD)


class MariaDBMixin:
    def database_url(self) -> str:
        return MariaDB(self).url


class HappyPathOnMariaDBTests(MariaDBMixin, HappyPathTests):
    pass


class DuplicateOnMariaDBTests(MariaDBMixin, DuplicateTests):
    pass


class AlbumOnMariaDBTests(MariaDBMixin, AlbumTests):
    pass
