"""The one DynamoDB table every DynamoDB adapter shares (docs/aws.md, "Table"), through the low-level client.

Items go in and come out as plain dicts of str, int, float, bool and sets of str. Expressions name
every attribute as `#name` and every value as `:name`; the placeholders are filled in here, so no
attribute ever collides with DynamoDB's reserved words. A conditional write that fails its condition
answers False or None instead of raising. Batch reads and deletes retry what DynamoDB left
unprocessed, with back-off, a bounded number of times.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

BATCH_GET_LIMIT = 100   # keys per BatchGetItem
BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem
_NAME = re.compile(r"#(\w+)")

Key = tuple[str, str]


class UnprocessedItems(RuntimeError):
    """DynamoDB kept leaving part of a batch unprocessed (throttling) after every retry."""


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), timezone.utc)


def encode(value: Any) -> dict:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": format(Decimal(repr(value)), "f")}
    if isinstance(value, (set, frozenset)):
        return {"SS": sorted(value)}
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


def decode(value: dict) -> Any:
    (kind, raw), = value.items()
    if kind == "N":
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if kind == "SS":
        return set(raw)
    if kind in ("S", "BOOL"):
        return raw
    raise TypeError(f"no Python type for DynamoDB {kind}")


def _item(attributes: Mapping[str, dict]) -> dict:
    return {name: decode(value) for name, value in attributes.items()}


def _condition_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class DynamoDBTable:
    def __init__(self, client, name: str, batch_attempts: int = 8):
        self.client, self.name, self.batch_attempts = client, name, batch_attempts

    def _expressions(self, values: Mapping[str, Any] | None, **expressions: str | None) -> dict:
        """The request's expressions with their attribute names and values filled in."""
        request = {name: text for name, text in expressions.items() if text}
        names = {f"#{n}": n for text in request.values() for n in _NAME.findall(text)}
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = {f":{k}": encode(v) for k, v in values.items()}
        return request

    @staticmethod
    def key(pk: str, sk: str) -> dict:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def get(self, pk: str, sk: str) -> dict | None:
        found = self.client.get_item(TableName=self.name, Key=self.key(pk, sk), ConsistentRead=True)
        return _item(found["Item"]) if "Item" in found else None

    def put(self, item: Mapping[str, Any], condition: str | None = None,
            values: Mapping[str, Any] | None = None) -> bool:
        """Write the whole item; False when `condition` did not hold (nothing was written)."""
        try:
            self.client.put_item(TableName=self.name, Item={k: encode(v) for k, v in item.items()},
                                 **self._expressions(values, ConditionExpression=condition))
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def update(self, pk: str, sk: str, expression: str, condition: str | None = None,
               values: Mapping[str, Any] | None = None, returns: str = "NONE") -> dict | None:
        """The attributes `returns` asks for ({} for none), or None when `condition` did not hold."""
        try:
            answer = self.client.update_item(
                TableName=self.name, Key=self.key(pk, sk), ReturnValues=returns,
                **self._expressions(values, UpdateExpression=expression, ConditionExpression=condition))
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        return _item(answer.get("Attributes", {}))

    def delete(self, pk: str, sk: str) -> bool:
        """True when there was an item to delete."""
        answer = self.client.delete_item(TableName=self.name, Key=self.key(pk, sk), ReturnValues="ALL_OLD")
        return "Attributes" in answer

    def query(self, pk: str, sk_prefix: str | None = None, limit: int | None = None,
              descending: bool = False, sk_between: tuple[str, str] | None = None) -> list[dict]:
        """The items of a partition (or of the sort keys starting with sk_prefix, or from sk_between's first to
        its last inclusive) in sort key order, or reversed; all of them, or the first `limit`."""
        condition, values = "#pk = :pk", {"pk": pk}
        if sk_prefix is not None:
            condition, values["prefix"] = condition + " AND begins_with(#sk, :prefix)", sk_prefix
        if sk_between is not None:
            condition += " AND #sk BETWEEN :low AND :high"
            values["low"], values["high"] = sk_between
        request = {"TableName": self.name, "ConsistentRead": True, "ScanIndexForward": not descending,
                   **self._expressions(values, KeyConditionExpression=condition)}
        items: list[dict] = []
        while True:
            if limit is not None:
                request["Limit"] = limit - len(items)
            page = self.client.query(**request)
            items.extend(_item(found) for found in page["Items"])
            if "LastEvaluatedKey" not in page or (limit is not None and len(items) >= limit):
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def batch_get(self, keys: Iterable[Key], consistent: bool = False, projection: str | None = None) -> list[dict]:
        """The items that exist among keys, in no particular order: one request per 100 keys, plus retries."""
        unique = [self.key(pk, sk) for pk, sk in dict.fromkeys(keys)]
        options = {"ConsistentRead": consistent, **self._expressions(None, ProjectionExpression=projection)}
        found: list[dict] = []

        def get(request: dict) -> dict:
            answer = self.client.batch_get_item(RequestItems=request)
            found.extend(_item(item) for item in answer["Responses"].get(self.name, []))
            return answer.get("UnprocessedKeys") or {}

        for start in range(0, len(unique), BATCH_GET_LIMIT):
            self._until_processed("BatchGetItem", get,
                                  {self.name: {"Keys": unique[start:start + BATCH_GET_LIMIT], **options}})
        return found

    def batch_delete(self, keys: Iterable[Key]) -> None:
        requests = [{"DeleteRequest": {"Key": self.key(pk, sk)}} for pk, sk in dict.fromkeys(keys)]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._until_processed(
                "BatchWriteItem",
                lambda pending: self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {},
                {self.name: requests[start:start + BATCH_WRITE_LIMIT]})

    def _until_processed(self, operation: str, send: Callable[[dict], dict], request: dict) -> None:
        """Send, then resend what DynamoDB left unprocessed, backing off; give up after batch_attempts."""
        for attempt in range(self.batch_attempts):
            request = send(request)
            if not request:
                return
            time.sleep(min(1.0, 0.05 * 2 ** attempt))
        raise UnprocessedItems(f"{operation} on {self.name} still throttled after {self.batch_attempts} attempts")
