"""Provision baton's AWS resources on a local endpoint, idempotently.

Creates, for stack prefix STACK:
  - DynamoDB table STACK-runs (PK/SK, indexes gsi1 GSI1PK/GSI1SK and gsi2 GSI2PK/GSI2SK), the
    same layout `baton_aws::DynamoStore::ensure_table` creates;
  - the rule STACK-task-answers on the bus (HumanTaskResolved events to the coordinator queue)
  - SQS queues STACK-coordinator, STACK-http, STACK-llm, STACK-human, each with a -dlq and a redrive policy
    (maxReceiveCount 5);
  - EventBridge bus STACK-bus;
  - EventBridge Scheduler group STACK (one-time timers and schedule triggers);
  - S3 bucket STACK-payloads;
  - S3 bucket STACK-audit-digests with Object Lock (versioned) and a default COMPLIANCE retention
    of --digest-retention-days (the template's AuditDigestRetentionDays, default 2555): the
    write-once witness of the audit seals.
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
    p.add_argument("--skip-dynamodb", action="store_true", help="everything but the table")
    p.add_argument("--visibility-timeout", default="60", help="seconds a received message stays hidden")
    p.add_argument("--digest-retention-days", type=int, default=2555,
                   help="Object Lock retention of the audit seals (the template's AuditDigestRetentionDays)")
    a = p.parse_args()
    kw = dict(endpoint_url=a.endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    ddb, sqs, events, s3 = (boto3.client(s, **kw) for s in ("dynamodb", "sqs", "events", "s3"))

    table = f"{a.stack}-runs"
    try:
        if a.skip_dynamodb:
            raise StopIteration
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
        # Worker claims carry an expiry; on AWS the table's TTL removes them.
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    except StopIteration:
        pass

    if a.only_dynamodb:
        print(f"provisioned table {table} at {a.endpoint}")
        return

    for family in ("coordinator", "http", "llm", "human"):
        dlq_url = sqs.create_queue(QueueName=f"{a.stack}-{family}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        attrs = {"RedrivePolicy": redrive, "VisibilityTimeout": a.visibility_timeout}
        url = sqs.create_queue(QueueName=f"{a.stack}-{family}", Attributes=attrs)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)

    bus = f"{a.stack}-bus"
    if bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=bus)
    # As the template's TaskAnswersRule: HumanTaskResolved events on the bus answer tasks.
    coordinator_url = sqs.get_queue_url(QueueName=f"{a.stack}-coordinator")["QueueUrl"]
    coordinator_arn = sqs.get_queue_attributes(QueueUrl=coordinator_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{a.stack}-task-answers", EventBusName=bus,
                    EventPattern=json.dumps({"detail-type": ["HumanTaskResolved"]}))
    events.put_targets(Rule=f"{a.stack}-task-answers", EventBusName=bus,
                       Targets=[{"Id": "coordinator", "Arn": coordinator_arn}])

    scheduler = boto3.client("scheduler", **kw)
    try:
        scheduler.get_schedule_group(Name=a.stack)
    except ClientError:
        # Only when missing: re-creating a group on the emulator drops its schedules.
        scheduler.create_schedule_group(Name=a.stack)

    bucket = f"{a.stack}-payloads"
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)

    # Object Lock can only be turned on when a bucket is created (it turns versioning on too).
    digests = f"{a.stack}-audit-digests"
    if digests not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=digests, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=digests,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": a.digest_retention_days}},
        },
    )

    print(f"provisioned stack {a.stack} at {a.endpoint}: table {table}, queues, bus {bus}, schedule group {a.stack}, buckets {bucket} and {digests} (Object Lock)")


if __name__ == "__main__":
    main()
