"""The adapters, each against its real backend (a moto server or the disk)."""

import json
import os

from twisted.trial.unittest import TestCase

from popeye import notify, storage, workflow
from popeye.config import Settings
from popeye.workflow import workflow_input
from tests.support import BUCKET, QUEUE, MotoServer

MiB = 1024 * 1024


def document(media_uuid="M"):
    return workflow_input(
        media_uuid=media_uuid, user_uuid="U", original_uuid="O", skip_faces=False, try_photos=False, bucket=BUCKET
    )


class LocalStoreTests(TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.store = storage.from_settings(Settings(storage="local", local_storage_dir=self.root))
        self.source = os.path.join(self.root + "-src")
        with open(self.source, "wb") as f:
            f.write(os.urandom(9 * MiB))

    def test_put_copies_under_the_key_and_reports_progress(self):
        seen = []
        self.store.put("u/u", self.source, seen.append)
        with open(os.path.join(self.root, "u", "u"), "rb") as stored, open(self.source, "rb") as original:
            self.assertEqual(stored.read(), original.read())
        self.assertEqual(sum(seen), 9 * MiB)
        self.assertEqual(os.listdir(os.path.join(self.root, "u")), ["u"], "no temporary file is left")

    def test_put_again_overwrites_and_delete_is_idempotent(self):
        self.store.put("u/u", self.source)
        self.store.put("u/u", self.source)
        self.store.delete("u/u")
        self.store.delete("u/u")
        self.assertEqual(os.listdir(os.path.join(self.root, "u")), [])

    def test_a_key_leaving_the_directory_is_refused(self):
        for key in ("../escape", "/etc/passwd", ""):
            with self.assertRaises(ValueError):
                self.store.put(key, self.source)


class S3StoreTests(TestCase):
    def setUp(self):
        self.moto = MotoServer.shared()
        self.moto.prepare()
        self.settings = Settings(storage="s3", bucket_name=BUCKET, aws_endpoint_url=self.moto.endpoint)

    def test_large_file_goes_up_in_parts_and_arrives_whole(self):
        store = storage.from_settings(self.settings)
        path = os.path.abspath(self.mktemp())
        data = os.urandom(40 * MiB)
        with open(path, "wb") as f:
            f.write(data)
        seen = []
        store.put("k/k", path, seen.append)
        self.assertEqual(sum(seen), len(data))
        self.assertGreater(len(seen), 1)
        head = self.moto.client("s3").head_object(Bucket=BUCKET, Key="k/k")
        self.assertTrue(head["ETag"].strip('"').endswith("-3"), head["ETag"])  # 3 parts of 16 MiB
        self.assertEqual(self.moto.objects()["k/k"], data)
        store.delete("k/k")
        self.assertEqual(self.moto.objects(), {})


class WorkflowStarterTests(TestCase):
    def setUp(self):
        self.moto = MotoServer.shared()
        self.moto.prepare(suffix="Prod", task_list="T")

    def test_swf_start_is_idempotent_by_workflow_id(self):
        starter = workflow.from_settings(
            Settings(workflow="swf", VPWSuffix="Prod", UniqueTaskList="T", aws_endpoint_url=self.moto.endpoint)
        )
        self.assertTrue(starter.start("M", document()))
        self.assertFalse(starter.start("M", document()))
        self.assertEqual([i["execution"]["workflowId"] for i in self.moto.open_executions()], ["M"])
        self.assertEqual(self.moto.workflow_input("M"), document())

    def test_step_functions_starts_an_execution_named_by_the_media_uuid(self):
        sfn = self.moto.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="VideoProcessing",
            definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/popeye",
        )["stateMachineArn"]
        starter = workflow.from_settings(
            Settings(workflow="stepfunctions", state_machine_arn=arn, aws_endpoint_url=self.moto.endpoint)
        )
        self.assertTrue(starter.start("M", document()))
        starter.start("M", document())  # a repeat counts as started, whatever the service answers
        [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
        self.assertEqual(execution["name"], "M")
        self.assertEqual(json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"]), document())

    def test_spool_writes_the_swf_request_once_per_workflow_id(self):
        spool = os.path.abspath(self.mktemp())
        starter = workflow.from_settings(
            Settings(workflow="spool", workflow_spool_dir=spool, VPWSuffix="Prod", UniqueTaskList="T")
        )
        self.assertTrue(starter.start("M", document()))
        self.assertFalse(starter.start("M", document("other")))
        self.assertEqual(os.listdir(spool), ["M.json"])
        with open(os.path.join(spool, "M.json")) as f:
            request = json.load(f)
        self.assertEqual(request["workflowType"], {"name": "VideoProcessingProd", "version": "1.0.7"})
        self.assertEqual(request["taskList"], {"name": "VPDeciderProdT"})
        self.assertEqual(json.loads(request["input"]), document())


class NotifierTests(TestCase):
    def setUp(self):
        self.moto = MotoServer.shared()
        self.moto.prepare()

    def test_sqs_notice_by_queue_name_and_by_queue_url(self):
        url = self.moto.client("sqs").get_queue_url(QueueName=QUEUE)["QueueUrl"]
        for queue in (QUEUE, url):
            notifier = notify.from_settings(
                Settings(notifier="sqs", email_queue=queue, sqs_region="us-east-1", aws_endpoint_url=self.moto.endpoint)
            )
            notifier.send({"subject": queue})
            self.assertEqual(self.moto.messages(), [{"subject": queue}])
