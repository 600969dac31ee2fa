"""Jobs on AWS run once per job_id: powertools idempotency keeps a record per job in the node's own table."""
from __future__ import annotations

import functools
from collections.abc import Callable

from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer, IdempotencyConfig,
                                                          idempotent_function)

# One partition of its own, records kept for a day (SQS redelivers within hours), then DynamoDB's TTL deletes them
JOB_RECORDS_PK = "IDEMPOTENCY#jobs"
JOB_IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="job_id", expires_after_seconds=24 * 3600,
                                   raise_on_no_idempotency_key=True)


@functools.cache
def _job_records(table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name, key_attr="pk", sort_key_attr="sk",
                                    static_pk_value=JOB_RECORDS_PK, expiry_attr="expires_at")


def run_once(table_name: str, handle: Callable[[dict], None], message: dict) -> None:
    """`handle(message)` unless a job with this message's job_id already ran; a job that raised left no record."""
    @idempotent_function(data_keyword_argument="message", persistence_store=_job_records(table_name),
                         config=JOB_IDEMPOTENCY)
    def once(message: dict) -> None:
        handle(message)

    once(message=message)
