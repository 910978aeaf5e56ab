"""boto3 clients built from Settings, shared by the adapters.

One endpoint (``aws_endpoint_url``) serves S3, SWF, Step Functions and SQS,
so the same code reaches AWS in production and a moto server in tests.
Transient errors (throttling, 5xx, connection errors) are retried by
botocore's standard retry mode; every call has connect and read timeouts.
Clients are thread-safe and are created when the job runner starts, never at
import time.
"""

import boto3
from botocore.config import Config

from popeye.config import Settings

#: Attempts per call, including the first, under botocore's standard mode.
MAX_ATTEMPTS = 5


def client(
    settings: Settings,
    service: str,
    region: str | None = None,
    attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = 10,
    read_timeout: float = 60,
):
    """A boto3 client for ``service``; credentials from boto3's standard chain
    unless the legacy ``awsAccess``/``awsSecret`` keys are set.  Health checks
    ask for one attempt and short timeouts: they must answer while the
    endpoint is down."""
    credentials = {}
    if settings.awsAccess and settings.awsSecret:
        credentials = {"aws_access_key_id": settings.awsAccess, "aws_secret_access_key": settings.awsSecret}
    return boto3.session.Session().client(
        service,
        region_name=region or settings.aws_region,
        endpoint_url=settings.aws_endpoint_url or None,
        config=Config(
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
        **credentials,
    )
