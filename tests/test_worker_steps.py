"""The Worker's steps one at a time, and the documents it sends (SPEC 3, 5, 7)."""

import hashlib
import json
import logging
import os
import threading

from twisted.trial.unittest import TestCase

from popeye.notify import EXISTING_TEMPLATE, PENDING_TEMPLATE, duplicate_notice
from popeye.worker import JobError, Worker, client_filename, flags_from, md5_of, title_from
from popeye.workflow import SWFStarter, workflow_input
from tests.support import ALBUM_UPLOAD, copy_upload, fixture_md5


def make_worker(path: str) -> Worker:
    return Worker(None, logging.getLogger("popeye.test"), {"full_filename": path}, backends=None)


class FilesTableTests(TestCase):
    def test_labels_files_and_keys_follow_the_legacy_table(self):
        worker = make_worker("/up/6fdb2400-eff3-11f1-b988-9586f4410af8")
        u = "6fdb2400-eff3-11f1-b988-9586f4410af8"
        self.assertEqual(worker.uuid, u)
        self.assertEqual(
            worker.files,
            {
                "main": {"ifile": f"/up/{u}", "ofile": f"/up/{u}", "key": f"{u}/{u}"},
                "metadata": {
                    "ifile": f"/up/{u}_metadata.json",
                    "ofile": f"/up/{u}_metadata.json",
                    "key": f"{u}/{u}_metadata.json",
                },
                "info": {"ifile": f"/up/{u}.json", "ofile": f"/up/{u}.json", "key": f"{u}/{u}.json"},
                "media_log": {"ifile": None, "ofile": f"/up/{u}.log", "key": None},
            },
        )
        self.assertEqual(worker.data, {"full_filename": f"/up/{u}"})
        self.assertEqual(worker.popeye_log.name, f"popeye.{u}")

    def test_uuid_is_the_file_name_without_extension(self):
        worker = make_worker("/up/abc.mp4")
        self.assertEqual(worker.uuid, "abc")
        self.assertEqual(worker.files["info"]["ifile"], "/up/abc.json")
        self.assertEqual(worker.files["main"]["key"], "abc/abc")


class NamingTests(TestCase):
    def test_title_from_a_windows_path(self):
        metadata = {"file": {"Path": "C:\\Users\\ann\\Videos\\Beach Day.MOV"}}
        self.assertEqual(title_from(metadata), "Beach Day")
        self.assertEqual(client_filename(metadata, "/up/x"), "C:\\Users\\ann\\Videos\\Beach Day.MOV")

    def test_title_from_a_posix_path_with_unicode(self):
        metadata = {"file": {"Path": "/home/bo/Vidéos/été 2014.mp4"}}
        self.assertEqual(title_from(metadata), "été 2014")
        self.assertEqual(client_filename(metadata, "/up/x"), "/home/bo/Vidéos/été 2014.mp4")

    def test_bare_name_and_names_without_extension(self):
        self.assertEqual(title_from({"file": {"Path": "clip.avi"}}), "clip")
        self.assertEqual(title_from({"file": {"Path": "C:/mixed\\dir/raw"}}), "raw")
        self.assertEqual(title_from({"file": {"Path": "日本語のビデオ.mov"}}), "日本語のビデオ")

    def test_without_a_client_path_title_is_none_and_filename_the_upload_name(self):
        for metadata in ({}, {"file": {}}, {"file": {"Path": ""}}, {"file": "not a dict"}):
            self.assertIsNone(title_from(metadata))
            self.assertEqual(client_filename(metadata, "/up/6fdb2400"), "6fdb2400")


class FlagTests(TestCase):
    def test_flags_follow_step_7(self):
        cases = [
            ({}, (False, False, False)),
            ({"skip_faces": True, "try_photos": 2, "album_uuid": "A"}, (True, "existing_user", "A")),
            ({"skip_faces": 1, "try_photos": 1}, (True, "new_user", False)),
            ({"skip_faces": False, "try_photos": "yes", "album_uuid": ""}, (False, "new_user", False)),
            ({"skip_faces": "", "try_photos": False, "album_uuid": None}, (False, False, False)),
            ({"try_photos": 0}, (False, False, False)),
        ]
        for metadata, expected in cases:
            self.assertEqual(flags_from(metadata), expected, metadata)


class ParseAndHashTests(TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.path = copy_upload(ALBUM_UPLOAD, self.dir)
        self.worker = make_worker(self.path)

    def test_md5_matches_the_whole_file_read_in_blocks(self):
        self.assertEqual(md5_of(self.path, threading.Event()), fixture_md5())
        big = os.path.join(self.dir, "big")
        with open(big, "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024 + 17))
        self.assertEqual(md5_of(big, threading.Event()), hashlib.md5(b"x" * (3 * 1024 * 1024 + 17)).hexdigest())

    def test_metadata_with_invalid_utf8_is_read_with_the_bad_bytes_dropped(self):
        with open(self.worker.files["metadata"]["ifile"], "wb") as f:
            f.write(b'{"file": {"Path": "C:\\\\clips\\\\caf\xe9 \xff\xfenight.mov"}, "skip_faces": true}')
        self.worker.parse_files()
        self.assertEqual(self.worker.data["metadata"]["file"]["Path"], "C:\\clips\\caf night.mov")
        self.assertEqual(self.worker.data["info"]["uid"], "0b1c2d3e-0000-4000-8000-000000000001")

    def test_malformed_info_is_an_error_naming_the_file(self):
        with open(self.worker.files["info"]["ifile"], "w") as f:
            f.write('{"uid": ')
        with self.assertRaises(JobError) as caught:
            self.worker.parse_files()
        self.assertIn("info file is not valid JSON", str(caught.exception))

    def test_missing_metadata_is_an_error_naming_it(self):
        os.unlink(self.worker.files["metadata"]["ifile"])
        with self.assertRaises(JobError) as caught:
            self.worker.check_files()
        self.assertIn("metadata file", str(caught.exception))

    def test_lock_is_exclusive_and_released_with_its_file(self):
        other = make_worker(self.path)
        self.assertIsNone(self.worker.take_lock())
        self.assertEqual(other.take_lock().name, "OTHER_JOB")
        self.worker._release_lock()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        self.assertIsNone(other.take_lock())
        other._release_lock()


#: SPEC section 5's example, with the placeholders filled in.
SPEC_INPUT = """
{"media_uuid": "M", "user_uuid": "U", "original_uuid": "O",
 "skip_faces": false, "try_photos": false,
 "input_file": {"s3_bucket": "B", "s3_key": "M/M"},
 "metadata_uri": "M/M_metadata.json",
 "outputs": [{"output_file": {"s3_bucket": "B", "s3_key": "M/M_output.mp4"},
              "format": "mp4", "max_video_bitrate": 1500, "audio_bitrate": 160, "asset_type": "main",
              "thumbnails": [
                {"times": [3.0], "type": "static", "size": "288x216", "label": "poster", "format": "png",
                 "output_file": {"s3_bucket": "B", "s3_key": "M/M_poster.png"}},
                {"times": [3.0], "type": "animated", "size": "288x216", "label": "poster_animated", "format": "gif",
                 "output_file": {"s3_bucket": "B", "s3_key": "M/M_poster_animated.gif"}}]}]}
"""


class WorkflowDocumentTests(TestCase):
    def test_input_matches_spec_section_5_field_by_field(self):
        document = workflow_input(
            media_uuid="M", user_uuid="U", original_uuid="O", skip_faces=False, try_photos=False, bucket="B"
        )
        expected = json.loads(SPEC_INPUT)
        self.assertEqual(sorted(document), sorted(expected))
        for key in expected:
            self.assertEqual(document[key], expected[key], key)
        self.assertEqual(json.loads(json.dumps(document)), expected)

    def test_flags_reach_the_input(self):
        document = workflow_input(
            media_uuid="M", user_uuid="U", original_uuid="O", skip_faces=True, try_photos="new_user", bucket="B"
        )
        self.assertEqual((document["skip_faces"], document["try_photos"]), (True, "new_user"))

    def test_swf_request_names_domain_type_version_and_task_list(self):
        request = SWFStarter(None, "Prod", "X1").request("M", {"a": 1})
        self.assertEqual(
            request,
            {
                "domain": "Viblio",
                "workflowId": "M",
                "workflowType": {"name": "VideoProcessingProd", "version": "1.0.7"},
                "taskList": {"name": "VPDeciderProdX1"},
                "input": '{"a": 1}',
            },
        )


class DuplicateNoticeTests(TestCase):
    def test_existing_notice_matches_spec_section_7(self):
        message = duplicate_notice(
            email="ann@example.com",
            displayname="Ann",
            template=EXISTING_TEMPLATE,
            media_uuid="M",
            title="Beach Day",
            poster_uri="M/M_poster.png",
            filename="C:\\Beach Day.MOV",
        )
        self.assertEqual(
            message,
            {
                "subject": "VIBLIO: Duplicate Video Uploaded",
                "to": [{"email": "ann@example.com", "name": "Ann"}],
                "template": "email/24-uploadExisting.tt",
                "stash": {
                    "user": {"displayname": "Ann"},
                    "model": {"media": [{"uuid": "M", "views": {"poster": {"uri": "M/M_poster.png"}}, "title": "Beach Day"}]},
                    "filename": "C:\\Beach Day.MOV",
                },
            },
        )

    def test_pending_notice_has_no_poster(self):
        message = duplicate_notice(
            email="a@b", displayname="A", template=PENDING_TEMPLATE, media_uuid="M", title=None,
            poster_uri=None, filename="f",
        )
        self.assertEqual(message["template"], "email/25-uploadPending.tt")
        self.assertEqual(message["stash"]["model"]["media"], [{"uuid": "M", "title": None}])
