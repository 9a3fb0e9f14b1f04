"""Deploys infra/template.yaml to the emulator's CloudFormation and checks what it created.

The template is translated offline with aws-sam-translator first (with a managed-policy loader that
never calls IAM; neither emulator expands the SAM transform without reaching AWS), the function code
is uploaded to the emulator's S3, and the plain CloudFormation template is deployed under a unique
StackPrefix. Which emulator answers decides what is stood in for:
  - LocalStack (the default of localstack/up): every resource deploys except the Lambda functions,
    their event source mappings, URL and permissions. LocalStack runs and even creates functions
    only with Docker (without it a new function ends in state Failed, "Installation of
    lambda-runtime failed"), so they are taken out of the deployed template, their properties are
    checked statically here, and what referenced them gets literal names, ARNs and URL.
  - moto (BATON_EMULATOR=moto): resource types moto's CloudFormation does not implement are skipped
    by moto (listed in MOTO_SKIPS, reported, not asserted); those that others reference are stood
    in for (MOTO_STAND_INS).
The stack, and the table and bucket it retains, are deleted at the end whatever happened.
"""
import json
import os
import sys
import time
import urllib.request
import zipfile

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CLIENT_KW, ENDPOINT, REGION, ROOT, load_template  # noqa: E402

# Types moto 5.2.5's CloudFormation has no model for: it skips them without failing the stack.
MOTO_SKIPS = {
    "AWS::Scheduler::ScheduleGroup",
    "AWS::Scheduler::Schedule",
    "AWS::SQS::QueuePolicy",
    "AWS::CloudWatch::Alarm",
}
# Types moto 5.2.5's CloudFormation has no model for, and that other resources reference (a skipped
# resource there fails CreateStack with a 500): the script stands in for them, see stand_in().
MOTO_STAND_INS = {"AWS::Lambda::Url", "AWS::SecretsManager::Secret"}
# Properties of deployed types that moto 5.2.5's CloudFormation does not apply.
MOTO_IGNORED_PROPERTIES = [
    "table TimeToLiveSpecification, PointInTimeRecoverySpecification and SSESpecification",
    "bucket LifecycleConfiguration, PublicAccessBlockConfiguration and OwnershipControls",
]
# What LocalStack without Docker cannot create (see the module's doc).
LAMBDA_TYPES = {"AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Url",
                "AWS::Lambda::Permission"}
BINARIES = {"CoordinatorFunction": "coordinator", "WorkerHttpFunction": "worker-http", "WorkerLlmFunction": "worker-llm",
            "ApiFunction": "api"}

os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # aws-sam-translator reads the region from boto3
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")


def step(msg):
    print(f"  - {msg}", flush=True)


class OfflinePolicyLoader:
    """aws-sam-translator asks this for AWS managed policy ARNs; the template names none, and a
    real loader would call IAM ListPolicies, which the offline translation must not do."""

    def load(self):
        return {}


def code_zip(binary):
    """The package `cargo lambda build --output-format zip` made (tests/lambda/run builds all four);
    never a placeholder: without it the deployment would test a template pointing at nothing."""
    package = os.path.join(ROOT, "target", "lambda", binary, "bootstrap.zip")
    if not os.path.isfile(package):
        raise SystemExit(f"no {package}: build the function packages first "
                         "(tests/lambda/run, or cargo lambda build --release --output-format zip)")
    with zipfile.ZipFile(package) as z:
        info = z.getinfo("bootstrap")
        assert info.file_size > 1_000_000, f"{package}: bootstrap is only {info.file_size} bytes"
    step(f"code for {binary}: {package} ({os.path.getsize(package) / 1e6:.1f} MB)")
    with open(package, "rb") as f:
        return f.read()


def translate(prefix, code_bucket, s3):
    from samtranslator.translator.transform import transform

    template = load_template()
    for logical, binary in BINARIES.items():
        key = f"{prefix}/{binary}.zip"
        s3.put_object(Bucket=code_bucket, Key=key, Body=code_zip(binary))
        template["Resources"][logical]["Properties"]["CodeUri"] = f"s3://{code_bucket}/{key}"
    params = {"StackPrefix": prefix, "Architecture": "x86_64"}
    return transform(template, params, OfflinePolicyLoader())


def stand_in(translated, prefix):
    """Replaces the resources in MOTO_STAND_INS: the signing secret is made with CreateSecret and
    referenced by its ARN, a function URL becomes a literal URL. Returns what was replaced."""
    sm = boto3.client("secretsmanager", **CLIENT_KW)
    values, replaced = {}, []
    for logical, r in list(translated["Resources"].items()):
        if r["Type"] == "AWS::SecretsManager::Secret":
            name = f"{prefix}/{logical}"
            arn = sm.create_secret(Name=name, SecretString=os.urandom(32).hex())["ARN"]
            values[json.dumps({"Ref": logical})] = arn
        elif r["Type"] == "AWS::Lambda::Url":
            url = f"https://{prefix}-{logical.lower()}.lambda-url.{REGION}.on.aws/"
            values[json.dumps({"Fn::GetAtt": [logical, "FunctionUrl"]})] = url
        else:
            continue
        replaced.append(f"{logical} ({r['Type']})")
        del translated["Resources"][logical]

    replace_references(translated, values)
    left = [k for k in values if k in json.dumps(translated)]
    assert not left, f"references to stand-ins left: {left}"
    return replaced


def replace_references(translated, values):
    """Replaces, in the template's resources and outputs, every node whose JSON is a key of
    `values` (a `Ref` or `Fn::GetAtt` of a resource taken out) with its literal."""
    def sub(node):
        if isinstance(node, dict):
            key = json.dumps(node)
            if key in values:
                return values[key]
            return {k: sub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [sub(v) for v in node]
        return node

    for section in ("Resources", "Outputs"):
        translated[section] = sub(translated.get(section, {}))


def emulator_kind():
    """`localstack` when the endpoint answers LocalStack's health check, else `moto`."""
    try:
        urllib.request.urlopen(ENDPOINT + "/_localstack/health", timeout=2)
        return "localstack"
    except Exception:
        return "moto"


def without_lambda(translated, prefix):
    """Takes the LAMBDA_TYPES resources out of the template (LocalStack), replacing every reference
    to them with literals, and returns them for the static checks."""
    removed = {k: r for k, r in translated["Resources"].items() if r["Type"] in LAMBDA_TYPES}
    account = boto3.client("sts", **CLIENT_KW).get_caller_identity()["Account"]
    values = {}
    for logical, r in removed.items():
        if r["Type"] == "AWS::Lambda::Function":
            name = f"{prefix}-{BINARIES[logical]}"
            values[json.dumps({"Ref": logical})] = name
            values[json.dumps({"Fn::GetAtt": [logical, "Arn"]})] = f"arn:aws:lambda:{REGION}:{account}:function:{name}"
        elif r["Type"] == "AWS::Lambda::Url":
            values[json.dumps({"Fn::GetAtt": [logical, "FunctionUrl"]})] = \
                f"https://{prefix}-{logical.lower()}.lambda-url.{REGION}.on.aws/"
    for logical in removed:
        del translated["Resources"][logical]

    replace_references(translated, values)
    left = [k for k in removed if json.dumps({"Ref": k}) in json.dumps(translated)
            or f'"Fn::GetAtt": ["{k}"' in json.dumps(translated)]
    assert not left, f"references to resources taken out are left: {left}"
    return removed


def check_functions_statically(prefix, removed):
    """The functions LocalStack cannot create: their settings as the translated template has them."""
    mappings = [r["Properties"] for r in removed.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    for logical, binary in BINARIES.items():
        props = removed[logical]["Properties"]
        env = props["Environment"]["Variables"]
        assert env["BATON_STACK"] == {"Ref": "StackPrefix"}, env
        assert props["Runtime"] == "provided.al2023" and props["Handler"] == "bootstrap", props
        assert props["Code"]["S3Key"] == f"{prefix}/{binary}.zip", props["Code"]
        if binary == "coordinator":
            assert env["BATON_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}, env
            assert env["BATON_CALLBACK_URL"] == {"Fn::GetAtt": ["ApiFunctionUrl", "FunctionUrl"]}, env
            assert env["BATON_CALLBACK_SECRET_ARN"] == {"Ref": "CallbackSecret"}, env
        mine = [m for m in mappings if m["FunctionName"] == {"Ref": logical}]
        if binary == "api":
            assert not mine, mine
            continue
        queue = "Coordinator" if binary == "coordinator" else binary.removeprefix("worker-").capitalize()
        assert len(mine) == 1 and mine[0]["EventSourceArn"] == {"Fn::GetAtt": [f"{queue}Queue", "Arn"]}, mine
        assert mine[0]["BatchSize"] == 10 and mine[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"], mine
    step("functions (checked in the translated template; LocalStack creates functions only with Docker): "
         "coordinator, worker-http and worker-llm with their env and SQS event sources (batch 10, "
         "ReportBatchItemFailures); api with no event source; code from the uploaded packages")


def wait(cfn, stack, done, failed, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        except ClientError as e:
            if done == "DELETE_COMPLETE" and "does not exist" in str(e):
                return {"StackStatus": done}
            raise
        if s["StackStatus"] == done:
            return s
        if s["StackStatus"] in failed:
            reasons = [f"{e['LogicalResourceId']} ({e.get('ResourceType')}): {e.get('ResourceStatusReason', '')}"
                       for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]
                       if e["ResourceStatus"].endswith("FAILED") and e["LogicalResourceId"] != stack]
            raise AssertionError(f"stack {stack}: {s['StackStatus']} {s.get('StackStatusReason', '')}; "
                                 + "; ".join(reasons))
        time.sleep(1)
    raise AssertionError(f"stack {stack} did not reach {done} in {timeout}s")


def check_deployed(prefix, translated, cfn, stack, kind):
    c = lambda name: boto3.client(name, **CLIENT_KW)  # noqa: E731
    ddb, sqs, events, s3, lam, logs, iam = map(c, ("dynamodb", "sqs", "events", "s3", "lambda", "logs", "iam"))

    deployed = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            deployed[r["LogicalResourceId"]] = r
    skipped, unexpected = [], []
    for logical, r in sorted(translated["Resources"].items()):
        if kind == "moto" and r["Type"] in MOTO_SKIPS:
            skipped.append(f"{logical} ({r['Type']})")
            if logical in deployed:
                print(f"    note: {logical} ({r['Type']}) was deployed after all: moto now supports it")
        elif logical not in deployed:
            unexpected.append(f"{logical} ({r['Type']})")
        elif not deployed[logical]["ResourceStatus"].endswith("COMPLETE"):
            unexpected.append(f"{logical}: {deployed[logical]['ResourceStatus']}")
    assert not unexpected, f"resources missing or not complete on the emulator: {unexpected}"
    step(f"{len(translated['Resources']) - len(skipped)} resources CREATE_COMPLETE")
    if kind == "moto":
        step(f"moto's CloudFormation cannot deploy (skipped, not checked here): {', '.join(skipped)}")
        step("properties moto's CloudFormation ignores (checked statically by test_template.py only): "
             + "; ".join(MOTO_IGNORED_PROPERTIES))

    table = ddb.describe_table(TableName=f"{prefix}-runs")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    gsis = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in table["GlobalSecondaryIndexes"]}
    assert gsis == {"gsi1": ["GSI1PK", "GSI1SK"], "gsi2": ["GSI2PK", "GSI2SK"]}, gsis
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", table
    step(f"table {prefix}-runs: PK/SK, gsi1, gsi2, PAY_PER_REQUEST")

    for family, timeout in (("coordinator", 30), ("http", 60), ("llm", 300), ("human", None)):
        dlq_url = sqs.get_queue_url(QueueName=f"{prefix}-{family}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.get_queue_url(QueueName=f"{prefix}-{family}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq_arn and int(redrive["maxReceiveCount"]) == 5, redrive
        if timeout:
            assert int(attrs["VisibilityTimeout"]) >= 6 * timeout, attrs["VisibilityTimeout"]
    step(f"queues {prefix}-coordinator/-http/-llm/-human with -dlq, maxReceiveCount 5, visibility >= 6x timeout")

    events.describe_event_bus(Name=f"{prefix}-bus")
    rule = events.describe_rule(Name=f"{prefix}-task-answers", EventBusName=f"{prefix}-bus")
    assert json.loads(rule["EventPattern"]) == {"detail-type": ["HumanTaskResolved"]}, rule
    targets = events.list_targets_by_rule(Rule=f"{prefix}-task-answers", EventBusName=f"{prefix}-bus")["Targets"]
    assert [t["Arn"].rsplit(":", 1)[1] for t in targets] == [f"{prefix}-coordinator"], targets
    step(f"bus {prefix}-bus with rule {prefix}-task-answers (HumanTaskResolved to the coordinator queue)")

    bucket = f"{prefix}-payloads"
    s3.head_bucket(Bucket=bucket)
    sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert sse[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", sse
    step(f"bucket {bucket} with SSE-S3")

    digests = f"{prefix}-audit-digests"
    lock = s3.get_object_lock_configuration(Bucket=digests)["ObjectLockConfiguration"]
    assert lock == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2555}}}, lock
    assert s3.get_bucket_versioning(Bucket=digests)["Status"] == "Enabled"
    step(f"bucket {digests} with Object Lock (COMPLIANCE, 2555 days) and versioning")

    for logical, binary in BINARIES.items():
        if kind == "localstack":
            # LocalStack's CloudFormation creates the group but does not apply RetentionInDays.
            groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{prefix}-{binary}")["logGroups"]
            assert len(groups) == 1, groups
            continue
        name = f"{prefix}-{binary}"
        conf = lam.get_function_configuration(FunctionName=name)
        env = conf["Environment"]["Variables"]
        assert env["BATON_STACK"] == prefix and env["BATON_MODEL_PROVIDER"] == "none", env
        assert conf["Runtime"] == "provided.al2023" and conf["Handler"] == "bootstrap", conf
        if binary == "coordinator":
            assert env["BATON_SCHEDULER_ROLE_ARN"].endswith(f":role/{prefix}-scheduler"), env
            assert env["BATON_CALLBACK_URL"].startswith("http"), env
            assert ":secret:" in env["BATON_CALLBACK_SECRET_ARN"], env
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        # LocalStack (also in its container) does not apply RetentionInDays.
        assert [g.get("retentionInDays") for g in groups] == ([None] if kind.startswith("localstack") else [30]), groups
        if binary == "api":
            secret = boto3.client("secretsmanager", **CLIENT_KW).get_secret_value(SecretId=env["BATON_CALLBACK_SECRET_ARN"])
            assert len(secret["SecretString"]) >= 32, "the signing key is shorter than 32 characters"
            assert not lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
            continue
        queue = "coordinator" if binary == "coordinator" else binary.removeprefix("worker-")
        maps = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
        assert len(maps) == 1 and maps[0]["EventSourceArn"].endswith(f":{prefix}-{queue}"), maps
        assert maps[0]["BatchSize"] == 10, maps[0]
        assert maps[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], maps[0]
    if kind != "localstack":
        step("functions coordinator, worker-http and worker-llm: env, SQS event sources (batch 10, "
             "ReportBatchItemFailures), log groups with 30-day retention; api: no event source, "
             "its signing key readable by the ARN the functions get")
    else:
        step("log groups of the four functions (LocalStack ignores their RetentionInDays: checked statically by "
             "test_template.py only)")

    iam.get_role(RoleName=f"{prefix}-scheduler")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]}
    expect = {"TableName": f"{prefix}-runs", "EventBusName": f"{prefix}-bus", "PayloadsBucketName": f"{prefix}-payloads",
              "AuditDigestsBucketName": f"{prefix}-audit-digests",
              "CoordinatorFunctionName": f"{prefix}-coordinator", "WorkerHttpFunctionName": f"{prefix}-worker-http",
              "ApiFunctionName": f"{prefix}-api", "WorkerLlmFunctionName": f"{prefix}-worker-llm"}
    for key, value in expect.items():
        assert outputs[key] == value, (key, outputs[key])
    for family in ("coordinator", "http", "llm", "human"):
        title = family.capitalize()
        assert outputs[f"{title}QueueUrl"].endswith(f"/{prefix}-{family}"), outputs[f"{title}QueueUrl"]
        assert outputs[f"{title}DlqUrl"].endswith(f"/{prefix}-{family}-dlq"), outputs[f"{title}DlqUrl"]
        assert outputs[f"{title}QueueArn"].endswith(f":{prefix}-{family}"), outputs[f"{title}QueueArn"]
    assert outputs["SchedulerRoleArn"].endswith(f":role/{prefix}-scheduler"), outputs["SchedulerRoleArn"]
    arn = outputs["OperatorPolicyArn"]
    assert arn.endswith(f":policy/{prefix}-operator"), arn
    iam.get_policy(PolicyArn=arn)
    step(f"role {prefix}-scheduler, managed policy {prefix}-operator, outputs: {', '.join(sorted(outputs))}")


def main():
    prefix = f"infra-check-{os.getpid()}-{int(time.time()) % 100000}"
    s3 = boto3.client("s3", **CLIENT_KW)
    cfn = boto3.client("cloudformation", **CLIENT_KW)
    code_bucket = f"{prefix}-code"
    step(f"emulator {ENDPOINT}; stack {prefix} (StackPrefix={prefix}, Architecture=x86_64)")
    s3.create_bucket(Bucket=code_bucket)
    try:
        translated = translate(prefix, code_bucket, s3)
        n = len(translated["Resources"])
        step(f"translated the SAM template offline with aws-sam-translator: {n} CloudFormation resources")
        kind = emulator_kind()
        step(f"emulator: {kind}")
        if kind == "localstack" and os.environ.get("BATON_EMULATOR") == "docker":
            # LocalStack's container runs Lambda: the functions deploy from the packages and are
            # checked through the Lambda API, as on AWS. (Written for users with Docker; the
            # machines CI runs on have none, so this branch is not exercised there.)
            kind = "localstack-docker"
        elif kind == "localstack":
            removed = without_lambda(translated, prefix)
            check_functions_statically(prefix, removed)
            step(f"taken out of the deployed template (LocalStack needs Docker for Lambda): {', '.join(sorted(removed))}")
        if kind == "moto":
            replaced = stand_in(translated, prefix)
            step("moto's CloudFormation cannot create these, which other resources reference; stood in for "
                 f"(a secret made with CreateSecret, a literal function URL; checked statically only): {', '.join(replaced)}")
        cfn.create_stack(
            StackName=prefix,
            TemplateBody=json.dumps(translated),
            Parameters=[
                {"ParameterKey": "StackPrefix", "ParameterValue": prefix},
                {"ParameterKey": "Architecture", "ParameterValue": "x86_64"},
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        wait(cfn, prefix, "CREATE_COMPLETE", {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED"})
        step("stack CREATE_COMPLETE")
        check_deployed(prefix, translated, cfn, prefix, kind)
    finally:
        cleanup(prefix, cfn, s3, code_bucket)
    print("emulator deployment: ok")


def cleanup(prefix, cfn, s3, code_bucket):
    ddb = boto3.client("dynamodb", **CLIENT_KW)
    for logical in ("CallbackSecret", "ApiTokenSecret", "AuditKeySecret", "MessageKeySecret"):
        try:
            boto3.client("secretsmanager", **CLIENT_KW).delete_secret(
                SecretId=f"{prefix}/{logical}", ForceDeleteWithoutRecovery=True)
        except ClientError:
            pass
    sqs = boto3.client("sqs", **CLIENT_KW)
    try:
        cfn.delete_stack(StackName=prefix)
        wait(cfn, prefix, "DELETE_COMPLETE", {"DELETE_FAILED"})
        step(f"stack {prefix} deleted")
    except ClientError as e:
        print(f"    cleanup: {e}")
    left = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    # moto's stack deletion leaves AWS::IAM::ManagedPolicy behind (real CloudFormation deletes it).
    iam = boto3.client("iam", **CLIENT_KW)
    for p in iam.list_policies(Scope="Local")["Policies"]:
        if p["PolicyName"] == f"{prefix}-operator":
            iam.delete_policy(PolicyArn=p["Arn"])
            step(f"deleted the managed policy {prefix}-operator that moto's stack deletion leaves behind")
    # The audit key secret, the table and the payloads bucket have DeletionPolicy Retain: remove
    # them by hand.
    try:
        boto3.client("secretsmanager", **CLIENT_KW).delete_secret(
            SecretId=f"{prefix}/audit-signing-key", ForceDeleteWithoutRecovery=True)
    except ClientError:
        pass
    for delete in (
        lambda: ddb.delete_table(TableName=f"{prefix}-runs"),
        lambda: empty_and_delete(s3, f"{prefix}-payloads"),
        # Empty: the deployment writes no seal, so nothing is under retention.
        lambda: s3.delete_bucket(Bucket=f"{prefix}-audit-digests"),
        lambda: empty_and_delete(s3, code_bucket),
    ):
        try:
            delete()
        except ClientError:
            pass
    step(f"removed the retained table {prefix}-runs, buckets {prefix}-payloads and {prefix}-audit-digests, and the code bucket")
    assert not left, f"queues left after the stack was deleted: {left}"


def empty_and_delete(s3, bucket):
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
