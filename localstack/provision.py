"""Provision baton's AWS resources on a local endpoint, idempotently.

Creates, for stack prefix STACK:
  - DynamoDB table STACK-runs (PK/SK, indexes gsi1 GSI1PK/GSI1SK and gsi2 GSI2PK/GSI2SK), the
    same layout `baton_aws::DynamoStore::ensure_table` creates;
  - SQS queues STACK-coordinator, STACK-http, STACK-human, each with a -dlq and a redrive policy
    (maxReceiveCount 5);
  - EventBridge bus STACK-bus;
  - S3 bucket STACK-payloads.
The SAM template (infra/, a later issue) will become the single source of truth for these.
"""
import argparse
import json

import boto3
from botocore.exceptions import ClientError


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stack", default="baton-dev")
    p.add_argument("--only-dynamodb", action="store_true", help="create the table only (DynamoDB Local)")
    a = p.parse_args()
    kw = dict(endpoint_url=a.endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    ddb, sqs, events, s3 = (boto3.client(s, **kw) for s in ("dynamodb", "sqs", "events", "s3"))

    table = f"{a.stack}-runs"
    try:
        ddb.describe_table(TableName=table)
    except ClientError:
        attrs = [{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK")]
        index = lambda name, pk, sk: {  # noqa: E731
            "IndexName": name,
            "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }
        ddb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=attrs,
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[index("gsi1", "GSI1PK", "GSI1SK"), index("gsi2", "GSI2PK", "GSI2SK")],
        )

    if a.only_dynamodb:
        print(f"provisioned table {table} at {a.endpoint}")
        return

    for family in ("coordinator", "http", "human"):
        dlq_url = sqs.create_queue(QueueName=f"{a.stack}-{family}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        sqs.create_queue(QueueName=f"{a.stack}-{family}", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"})

    bus = f"{a.stack}-bus"
    if bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=bus)

    bucket = f"{a.stack}-payloads"
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)

    print(f"provisioned stack {a.stack} at {a.endpoint}: table {table}, queues, bus {bus}, bucket {bucket}")


if __name__ == "__main__":
    main()
