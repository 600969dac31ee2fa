"""The job queue on AWS: one SQS standard queue, whose messages the `verify_worker` handler consumes.

Each job is one message whose body is `job_body`, the same JSON the local worker hands the handler.
SQS limits what the port promises in two ways:

- A standard queue does not deduplicate, so a second job with the same `dedupe_key` is sent all the
  same; the key travels as the message attribute `dedupe_key` for whoever reads the queue. Duplicates
  are made harmless on the consuming side: the handler runs each job_id once (powertools idempotency on
  the node's table) and each job is idempotent in its own right (a verification records its result once
  by verification_id, a digest sends only what is still held).
- SQS delays a message by at most 15 minutes; a longer delay is cut to that, so such a job runs early.
  The only delayed job, the alert digest, is due at the end of its alert window (15 minutes by
  default); with a longer window a digest goes out early with what is held so far and queues itself
  again for the window's end, so none is lost.
"""
from __future__ import annotations

import uuid

from ..core.ports import Job
from .local_worker import job_body

MAX_DELAY_SECONDS = 900
DEDUPE_ATTRIBUTE = "dedupe_key"


class SQSJobQueue:
    def __init__(self, client, queue_url: str):
        self.client = client
        self.queue_url = queue_url

    def enqueue(self, kind: str, payload: dict, delay_seconds: int = 0, dedupe_key: str | None = None) -> str:
        job_id = uuid.uuid4().hex
        message = {"QueueUrl": self.queue_url, "MessageBody": job_body(Job(job_id, kind, payload)),
                   "DelaySeconds": min(max(int(delay_seconds), 0), MAX_DELAY_SECONDS)}
        if dedupe_key:
            message["MessageAttributes"] = {DEDUPE_ATTRIBUTE: {"DataType": "String", "StringValue": dedupe_key}}
        self.client.send_message(**message)
        return job_id
