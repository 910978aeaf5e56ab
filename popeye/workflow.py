"""Starting the video-processing workflow (SPEC section 5).

The workflowId (or Step Functions execution name) is the media uuid, so the
service itself refuses a second start: that refusal means "already started"
and makes a repeated start after a crash harmless.
"""

import json
import os
import tempfile
from typing import Any, Protocol

from popeye import aws
from popeye.config import Settings

DOMAIN = "Viblio"
WORKFLOW_VERSION = "1.0.7"


def workflow_input(
    *,
    media_uuid: str,
    user_uuid: str,
    original_uuid: str,
    skip_faces: bool,
    try_photos: str | bool,
    bucket: str,
) -> dict[str, Any]:
    """The input document the legacy workflow expects, field for field."""
    key = f"{media_uuid}/{media_uuid}"

    def thumbnail(kind: str, label: str, fmt: str) -> dict[str, Any]:
        return {
            "times": [3.0],
            "type": kind,
            "size": "288x216",
            "label": label,
            "format": fmt,
            "output_file": {"s3_bucket": bucket, "s3_key": f"{key}_{label}.{fmt}"},
        }

    return {
        "media_uuid": media_uuid,
        "user_uuid": user_uuid,
        "original_uuid": original_uuid,
        "skip_faces": skip_faces,
        "try_photos": try_photos,
        "input_file": {"s3_bucket": bucket, "s3_key": key},
        "metadata_uri": f"{key}_metadata.json",
        "outputs": [
            {
                "output_file": {"s3_bucket": bucket, "s3_key": f"{key}_output.mp4"},
                "format": "mp4",
                "max_video_bitrate": 1500,
                "audio_bitrate": 160,
                "asset_type": "main",
                "thumbnails": [
                    thumbnail("static", "poster", "png"),
                    thumbnail("animated", "poster_animated", "gif"),
                ],
            }
        ],
    }


class WorkflowStarter(Protocol):
    def start(self, workflow_id: str, document: dict[str, Any]) -> bool:
        """Start the workflow; False when one with this id was already started."""


class SWFStarter:
    def __init__(self, client, suffix: str, task_list_suffix: str):
        self.client = client
        self.workflow_type = {"name": f"VideoProcessing{suffix}", "version": WORKFLOW_VERSION}
        self.task_list = {"name": f"VPDecider{suffix}{task_list_suffix}"}

    def request(self, workflow_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """The StartWorkflowExecution parameters, also what the spool records."""
        return {
            "domain": DOMAIN,
            "workflowId": workflow_id,
            "workflowType": self.workflow_type,
            "taskList": self.task_list,
            "input": json.dumps(document),
        }

    def start(self, workflow_id: str, document: dict[str, Any]) -> bool:
        try:
            self.client.start_workflow_execution(**self.request(workflow_id, document))
        except self.client.exceptions.WorkflowExecutionAlreadyStartedFault:
            return False
        return True


class StepFunctionsStarter:
    def __init__(self, client, state_machine_arn: str):
        self.client = client
        self.state_machine_arn = state_machine_arn

    def start(self, workflow_id: str, document: dict[str, Any]) -> bool:
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=workflow_id, input=json.dumps(document)
            )
        except self.client.exceptions.ExecutionAlreadyExists:
            return False
        return True


class SpoolStarter:
    """One JSON file per workflowId holding the request SWF would have got;
    for the embedded default, and for a downstream that polls a directory."""

    def __init__(self, directory: str, swf: SWFStarter):
        self.directory = directory
        self.swf = swf

    def start(self, workflow_id: str, document: dict[str, Any]) -> bool:
        os.makedirs(self.directory, exist_ok=True)
        target = os.path.join(self.directory, f"{workflow_id}.json")
        if os.path.exists(target):
            return False
        with tempfile.NamedTemporaryFile("w", dir=self.directory, prefix=".start-", delete=False) as temp:
            json.dump(self.swf.request(workflow_id, document), temp, indent=2)
        os.replace(temp.name, target)
        return True


def from_settings(settings: Settings) -> WorkflowStarter:
    if settings.workflow == "stepfunctions":
        return StepFunctionsStarter(aws.client(settings, "stepfunctions"), settings.state_machine_arn)
    if settings.workflow == "swf":
        return SWFStarter(aws.client(settings, "swf"), settings.VPWSuffix, settings.UniqueTaskList)
    return SpoolStarter(settings.workflow_spool_dir, SWFStarter(None, settings.VPWSuffix, settings.UniqueTaskList))
