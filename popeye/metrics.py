"""Prometheus metrics of the job runner (``GET /metrics``).

Each runner has its own registry, so two services in one process (tests)
never mix their counts.  The legacy instrumentation events of the contract
(``070_store_s3_completed`` ...) are counted under their own names.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Seconds, from a fixture job (a tenth of a second) to a many-GiB upload.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.jobs = Counter(
            "popeye_jobs", "Jobs ended, by outcome (done, duplicate-skipped, failed, busy, interrupted)",
            ["outcome"], registry=registry,
        )
        self.job_duration = Histogram(
            "popeye_job_duration_seconds", "Time from a job's start to its end", buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.step_duration = Histogram(
            "popeye_step_duration_seconds", "Time spent in each step of the job, retries included", ["step"],
            buckets=DURATION_BUCKETS, registry=registry,
        )
        self.uploaded = Counter("popeye_uploaded_bytes", "Bytes sent to the object store", registry=registry)
        self.retries = Counter(
            "popeye_retries", "Transient errors waited out, by the error's type", ["cause"], registry=registry
        )
        self.events = Counter(
            "popeye_events", "The legacy instrumentation events, by name", ["event"], registry=registry
        )
        self.queue_depth = Gauge("popeye_queue_depth", "Jobs queued, not yet running", registry=registry)
        self.running = Gauge("popeye_jobs_running", "Jobs running now", registry=registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
