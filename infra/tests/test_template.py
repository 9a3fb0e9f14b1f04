"""Checks infra/template.yaml against the names the code uses, against localstack/provision.py,
and for least privilege. Plain unittest; run by infra/check (needs the moto server for the
provision.py comparison)."""
import json
import os
import re
import subprocess
import sys
import time
import unittest

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CLIENT_KW, ROOT, TEMPLATE, load_template, of_type, pseudo, resolve  # noqa: E402

PREFIX = "baton-dev"
T = load_template()
P = pseudo(PREFIX)
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Events::EventBus": "Name",
    "AWS::Scheduler::ScheduleGroup": "Name",
    "AWS::S3::Bucket": "BucketName",
}


def names(template, type_, prefix):
    """{resolved name: logical id} of the resources of `type_` for StackPrefix `prefix`."""
    params = pseudo(prefix)
    return {resolve(r["Properties"][NAME_PROPERTY[type_]], params): k for k, r in of_type(template, type_).items()}


def by_name(type_, name):
    found = names(T, type_, PREFIX)
    assert name in found, f"no {type_} named {name} in the template (it has {sorted(found)})"
    return T["Resources"][found[name]]["Properties"]


def function(logical):
    """A function's properties with the template's Globals merged in (Environment merged deeply)."""
    g = dict(T.get("Globals", {}).get("Function", {}))
    p = dict(T["Resources"][logical]["Properties"])
    env = dict(g.get("Environment", {}).get("Variables", {}))
    env.update(p.get("Environment", {}).get("Variables", {}))
    merged = {**g, **p}
    merged["Environment"] = {"Variables": env}
    return merged


def functions():
    """{function name for baton-dev: logical id}."""
    return {resolve(r["Properties"]["FunctionName"], P): k for k, r in of_type(T, "AWS::Serverless::Function").items()}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def worker_tools():
    """Tools that run on their own worker function: each ToolSpec in shared/core/src/plan/tools/
    whose placement is `Placement::Worker { queue: ".." }` (the Rust side reads the same specs)."""
    tools_dir = os.path.join(ROOT, "shared/core/src/plan/tools")
    found = []
    for name in sorted(os.listdir(tools_dir)):
        if name.endswith(".rs"):
            found += re.findall(r'Placement::Worker\s*\{\s*queue:\s*"([^"]+)"', read(os.path.join(tools_dir, name)))
    assert found, "no Placement::Worker tool found in shared/core/src/plan/tools/"
    return sorted(set(found))


def statements(template):
    """(where, statement) for every policy statement in the template."""
    out = []
    for logical, r in template["Resources"].items():
        p = r.get("Properties", {})
        docs = []
        if r["Type"] == "AWS::IAM::Role":
            docs = [(f"{logical}.{x['PolicyName']}", x["PolicyDocument"]) for x in p.get("Policies", [])]
            docs.append((f"{logical}.AssumeRolePolicyDocument", p["AssumeRolePolicyDocument"]))
        elif r["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::SQS::QueuePolicy", "AWS::IAM::Policy"):
            docs = [(logical, p["PolicyDocument"])]
        elif r["Type"] == "AWS::Serverless::Function":
            assert "Policies" not in p, f"{logical}: use the explicit role, not SAM Policies"
        for where, doc in docs:
            out += [(where, s) for s in doc["Statement"]]
    return out


def as_list(x):
    return x if isinstance(x, list) else [x]


def allowed(role):
    """{action: [resources]} that the inline policies of `role` allow."""
    out = {}
    for where, s in statements(T):
        if where.startswith(role + ".") and not where.endswith("AssumeRolePolicyDocument"):
            for a in as_list(s["Action"]):
                out.setdefault(a, []).extend(resolve(x, P) for x in as_list(s["Resource"]))
    return out


class CodeNames(unittest.TestCase):
    """Every name the code derives from the stack prefix exists in the template (baton-dev)."""

    def test_table_keys_indexes_ttl(self):
        t = by_name("AWS::DynamoDB::Table", f"{PREFIX}-runs")
        self.assertEqual({(k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]}, {("PK", "HASH"), ("SK", "RANGE")})
        gsis = {g["IndexName"]: ([k["AttributeName"] for k in g["KeySchema"]], g["Projection"]["ProjectionType"])
                for g in t["GlobalSecondaryIndexes"]}
        self.assertEqual(gsis, {"gsi1": (["GSI1PK", "GSI1SK"], "ALL"), "gsi2": (["GSI2PK", "GSI2SK"], "ALL")})
        self.assertTrue(all(a["AttributeType"] == "S" for a in t["AttributeDefinitions"]))
        self.assertEqual(t["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(t["TimeToLiveSpecification"], {"AttributeName": "ttl", "Enabled": True})
        self.assertTrue(t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])
        self.assertTrue(t["SSESpecification"]["SSEEnabled"])

    def test_queues_and_dead_letter_queues(self):
        queues = names(T, "AWS::SQS::Queue", PREFIX)
        families = ["coordinator", "human", *worker_tools()]
        self.assertEqual(set(queues), {f"{PREFIX}-{f}{d}" for f in families for d in ("", "-dlq")})
        for f in families:
            q = by_name("AWS::SQS::Queue", f"{PREFIX}-{f}")
            redrive = q["RedrivePolicy"]
            self.assertEqual(int(redrive["maxReceiveCount"]), 5, f)
            self.assertEqual(resolve(redrive["deadLetterTargetArn"], P), ("GetAtt", queues[f"{PREFIX}-{f}-dlq"], "Arn"))
            self.assertTrue(q.get("SqsManagedSseEnabled"), f)
            self.assertTrue(by_name("AWS::SQS::Queue", f"{PREFIX}-{f}-dlq").get("SqsManagedSseEnabled"), f)

    def test_bus_schedule_group_bucket_role(self):
        by_name("AWS::Events::EventBus", f"{PREFIX}-bus")
        by_name("AWS::Scheduler::ScheduleGroup", PREFIX)
        b = by_name("AWS::S3::Bucket", f"{PREFIX}-payloads")
        self.assertEqual(set(b["PublicAccessBlockConfiguration"].values()), {True})
        self.assertEqual(len(b["PublicAccessBlockConfiguration"]), 4)
        self.assertTrue(b["BucketEncryption"]["ServerSideEncryptionConfiguration"])
        rules = b["LifecycleConfiguration"]["Rules"]
        self.assertTrue(any(r["Prefix"] == "payloads/" and r["ExpirationInDays"] == 30 and r["Status"] == "Enabled"
                            for r in rules), rules)
        roles = {resolve(r["Properties"].get("RoleName"), P): k for k, r in of_type(T, "AWS::IAM::Role").items()}
        self.assertIn(f"{PREFIX}-scheduler", roles)  # the code's default BATON_SCHEDULER_ROLE_ARN
        trust = T["Resources"][roles[f"{PREFIX}-scheduler"]]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual([s["Principal"] for s in trust], [{"Service": "scheduler.amazonaws.com"}])
        self.assertEqual(allowed(roles[f"{PREFIX}-scheduler"]), {"sqs:SendMessage": [("GetAtt", "CoordinatorQueue", "Arn")]})
        policy = of_type(T, "AWS::IAM::ManagedPolicy")
        self.assertEqual([resolve(p["Properties"]["ManagedPolicyName"], P) for p in policy.values()], [f"{PREFIX}-operator"])

    def test_audit_digests_bucket_is_write_once(self):
        b = by_name("AWS::S3::Bucket", f"{PREFIX}-audit-digests")
        self.assertIs(b["ObjectLockEnabled"], True)
        lock = b["ObjectLockConfiguration"]
        self.assertEqual(lock["ObjectLockEnabled"], "Enabled")
        # COMPLIANCE: nobody, the account's root user included, can delete a seal or shorten its
        # retention; GOVERNANCE would let a role with s3:BypassGovernanceRetention do both.
        self.assertEqual(lock["Rule"]["DefaultRetention"],
                         {"Mode": "COMPLIANCE", "Days": {"Ref": "AuditDigestRetentionDays"}})
        self.assertNotIn("Years", lock["Rule"]["DefaultRetention"])
        days = T["Parameters"]["AuditDigestRetentionDays"]
        self.assertEqual((days["Type"], days["Default"]), ("Number", 2555))
        self.assertGreaterEqual(days["MinValue"], 365)
        self.assertEqual(b["VersioningConfiguration"], {"Status": "Enabled"}, "Object Lock needs versioning")
        self.assertEqual(set(b["PublicAccessBlockConfiguration"].values()), {True})
        self.assertEqual(len(b["PublicAccessBlockConfiguration"]), 4)
        self.assertTrue(b["BucketEncryption"]["ServerSideEncryptionConfiguration"])
        self.assertEqual(b["OwnershipControls"]["Rules"], [{"ObjectOwnership": "BucketOwnerEnforced"}])
        self.assertNotIn("LifecycleConfiguration", b, "seals never expire before their retention")
        logical = names(T, "AWS::S3::Bucket", PREFIX)[f"{PREFIX}-audit-digests"]
        self.assertEqual(T["Resources"][logical]["DeletionPolicy"], "Retain")
        self.assertEqual(T["Resources"][logical]["UpdateReplacePolicy"], "Retain")
        self.assertEqual(T["Outputs"]["AuditDigestsBucketName"]["Value"], {"Ref": logical})
        src = read(os.path.join(ROOT, "shared/aws/src/digest_witness.rs"))
        self.assertIn('format!("{stack}-audit-digests")', src)
        self.assertIn('"BATON_DIGEST_BUCKET"', src)
        self.assertIn('"digests/"', src)
        # The signer writes and the verifier reads the bucket: both are told its name.
        for fn in (f"{PREFIX}-coordinator", f"{PREFIX}-api"):
            env = function(functions()[fn])["Environment"]["Variables"]
            self.assertEqual(env["BATON_DIGEST_BUCKET"], {"Ref": logical}, fn)

    def test_every_stack_name_in_the_rust_code_exists(self):
        suffixes = set()
        for d in ("shared/aws/src", "cli/src"):
            for f in os.listdir(os.path.join(ROOT, d)):
                if f.endswith(".rs"):
                    src = read(os.path.join(ROOT, d, f))
                    suffixes |= set(re.findall(r'\{stack\}-([a-z][a-z0-9-]*)"', src))
        self.assertTrue({"runs", "bus", "payloads", "coordinator", "scheduler"} <= suffixes, suffixes)
        defined = set()
        for type_ in NAME_PROPERTY:
            defined |= set(names(T, type_, PREFIX))
        defined |= {resolve(r["Properties"]["RoleName"], P) for r in of_type(T, "AWS::IAM::Role").values()
                    if "RoleName" in r["Properties"]}
        for s in sorted(suffixes):
            self.assertIn(f"{PREFIX}-{s}", defined, f"the code names `{{stack}}-{s}`, the template does not")

    def test_functions_and_event_sources(self):
        fns = functions()
        expect = {f"{PREFIX}-coordinator": "coordinator", **{f"{PREFIX}-worker-{t}": t for t in worker_tools()}}
        self.assertEqual(set(fns), set(expect) | {f"{PREFIX}-api"})
        for name, queue in expect.items():
            f = function(fns[name])
            binary = name.removeprefix(f"{PREFIX}-")
            self.assertEqual(f["CodeUri"].rstrip("/"), f"../target/lambda/{binary}")
            self.assertEqual((f["Runtime"], f["Handler"]), ("provided.al2023", "bootstrap"))
            self.assertEqual(f["Architectures"], [{"Ref": "Architecture"}])
            env = f["Environment"]["Variables"]
            self.assertEqual(env["BATON_STACK"], {"Ref": "StackPrefix"})
            self.assertEqual(env["BATON_MODEL_PROVIDER"], {"Ref": "ModelProvider"})
            events = list(f["Events"].values())
            self.assertEqual(len(events), 1, name)
            e = events[0]
            self.assertEqual(e["Type"], "SQS")
            self.assertEqual(e["Properties"]["FunctionResponseTypes"], ["ReportBatchItemFailures"])
            self.assertEqual(e["Properties"]["BatchSize"], 10)
            self.assertLessEqual(e["Properties"].get("MaximumBatchingWindowInSeconds", 0), 5)
            logical = resolve(e["Properties"]["Queue"], P)[1]
            q = T["Resources"][logical]["Properties"]
            self.assertEqual(resolve(q["QueueName"], P), f"{PREFIX}-{queue}")
            self.assertGreaterEqual(q["VisibilityTimeout"], 6 * f["Timeout"], f"{name}: visibility < 6x timeout")
            group = [r for r in of_type(T, "AWS::Logs::LogGroup").values()
                     if resolve(r["Properties"]["LogGroupName"], P) == f"/aws/lambda/{name}"]
            self.assertEqual(len(group), 1, f"{name}: no log group")
            self.assertEqual(group[0]["Properties"]["RetentionInDays"], {"Ref": "LogRetentionDays"})
        coordinator = function(fns[f"{PREFIX}-coordinator"])["Environment"]["Variables"]
        self.assertEqual(resolve(coordinator["BATON_SCHEDULER_ROLE_ARN"], P), ("GetAtt", "SchedulerRole", "Arn"))
        self.assertEqual(resolve(coordinator["BATON_CALLBACK_URL"], P), ("GetAtt", "ApiFunctionUrl", "FunctionUrl"))
        self.assertEqual(resolve(coordinator["BATON_CALLBACK_SECRET_ARN"], P), ("Ref", "CallbackSecret"))

    def test_api_function_serves_signed_links_from_its_url(self):
        api = function(functions()[f"{PREFIX}-api"])
        self.assertEqual(api["CodeUri"].rstrip("/"), "../target/lambda/api")
        self.assertEqual(api["FunctionUrlConfig"], {"AuthType": "NONE"})  # the HMAC in each link is the auth
        self.assertNotIn("Events", api, "the api function reads no queue")
        self.assertEqual(resolve(api["Environment"]["Variables"]["BATON_CALLBACK_SECRET_ARN"], P), ("Ref", "CallbackSecret"))
        secrets = of_type(T, "AWS::SecretsManager::Secret")
        self.assertEqual(set(secrets), {"CallbackSecret", "ApiTokenSecret", "AuditKeySecret", "MessageKeySecret"})
        coordinator = function(functions()[f"{PREFIX}-coordinator"])["Environment"]["Variables"]
        self.assertEqual(resolve(coordinator["BATON_AUDIT_KEY_ARN"], P), ("Ref", "AuditKeySecret"))
        # Results are believed only when signed with the key the coordinator and the workers share.
        for fn in ("coordinator", "worker-http", "worker-llm"):
            env = function(functions()[f"{PREFIX}-{fn}"])["Environment"]["Variables"]
            self.assertEqual(resolve(env["BATON_MESSAGE_KEY_ARN"], P), ("Ref", "MessageKeySecret"), fn)
        self.assertNotIn("BATON_MESSAGE_KEY_ARN", api["Environment"]["Variables"], "the api function sends no results")
        self.assertEqual(resolve(coordinator["BATON_TASK_ANSWER_SOURCES"], P), ("Ref", "TaskAnswerSources"))
        # Calls the coordinator runs itself: at most half the sweep's 10 s lease, 0 turns them off.
        self.assertEqual(resolve(coordinator["BATON_INLINE_CALL_MS"], P), ("Ref", "InlineCallMs"))
        inline = T["Parameters"]["InlineCallMs"]
        self.assertEqual((inline["Default"], inline["MinValue"], inline["MaxValue"]), (5000, 0, 5000))
        self.assertIn("SWEEP_LEASE_MS / 2", read(os.path.join(ROOT, "shared/runtime/src/coordinator/inline_calls.rs")))
        self.assertIn("pub const SWEEP_LEASE_MS: u64 = 10_000;", read(os.path.join(ROOT, "shared/runtime/src/coordinator/host.rs")))
        self.assertEqual(T["Parameters"]["TaskAnswerSources"]["Default"], "")
        self.assertIn('"BATON_TASK_ANSWER_SOURCES"', read(os.path.join(ROOT, "shared/aws/src/handlers.rs")))
        self.assertEqual(resolve(api["Environment"]["Variables"]["BATON_AUDIT_KEY_ARN"], P), ("Ref", "AuditKeySecret"))
        # Digests of runs kept after the stack must stay checkable.
        self.assertEqual(secrets["AuditKeySecret"]["DeletionPolicy"], "Retain")
        for secret in secrets.values():
            self.assertGreaterEqual(secret["Properties"]["GenerateSecretString"]["PasswordLength"], 32)
        self.assertEqual(resolve(api["Environment"]["Variables"]["BATON_API_TOKEN_ARN"], P), ("Ref", "ApiTokenSecret"))
        src = read(os.path.join(ROOT, "shared/runtime/src/callback.rs"))
        self.assertIn("MIN_SECRET_BYTES: usize = 32", src)
        group = [r for r in of_type(T, "AWS::Logs::LogGroup").values()
                 if resolve(r["Properties"]["LogGroupName"], P) == f"/aws/lambda/{PREFIX}-api"]
        self.assertEqual(len(group), 1)

    def test_task_answers_rule(self):
        (r,) = of_type(T, "AWS::Events::Rule").values()
        p = r["Properties"]
        self.assertEqual(resolve(p["Name"], P), f"{PREFIX}-task-answers")
        self.assertEqual(p["EventPattern"], {"detail-type": ["HumanTaskResolved"]})
        self.assertEqual(resolve(p["EventBusName"], P), f"{PREFIX}-bus")
        self.assertEqual(r["DependsOn"], "EventBus")
        self.assertEqual([resolve(t["Arn"], P) for t in p["Targets"]], [("GetAtt", "CoordinatorQueue", "Arn")])
        src = read(os.path.join(ROOT, "shared/runtime/src/messages.rs"))
        self.assertIn('TASK_RESOLVED: &str = "HumanTaskResolved"', src)
        # The coordinator queue's policy lets the stack's rules deliver, this one included.
        policy = T["Resources"]["CoordinatorQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        self.assertTrue(resolve(policy["Condition"]["ArnLike"]["aws:SourceArn"], P).endswith(f"-bus/{PREFIX}-*"))

    def test_sweep_schedule(self):
        (s,) = of_type(T, "AWS::Scheduler::Schedule").values()
        p = s["Properties"]
        self.assertEqual(resolve(p["GroupName"], P), ("Ref", "ScheduleGroup"))
        self.assertEqual(p["ScheduleExpression"], "rate(1 minute)")
        self.assertEqual(json.loads(p["Target"]["Input"]), {"kind": "sweep"})
        self.assertEqual(resolve(p["Target"]["Arn"], P), ("GetAtt", "CoordinatorQueue", "Arn"))
        self.assertEqual(resolve(p["Target"]["RoleArn"], P), ("GetAtt", "SchedulerRole", "Arn"))

    def test_alarms(self):
        alarms = [a["Properties"] for a in of_type(T, "AWS::CloudWatch::Alarm").values()]
        def has(metric, target, threshold):
            return any(a["MetricName"] == metric and resolve(a["Dimensions"][0]["Value"], P)[1] == target
                       and a["Threshold"] == threshold and a["ComparisonOperator"] == "GreaterThanThreshold"
                       for a in alarms)
        for dlq in ("CoordinatorDlq", "HttpDlq", "LlmDlq", "HumanDlq"):
            self.assertTrue(has("ApproximateNumberOfMessagesVisible", dlq, 0), dlq)
        self.assertTrue(has("Errors", "CoordinatorFunction", 0))
        self.assertTrue(has("ApproximateAgeOfOldestMessage", "CoordinatorQueue", 300))


class LeastPrivilege(unittest.TestCase):
    def test_resource_star_only_with_a_comment_on_the_line(self):
        star = re.compile(r"""(Resource:\s*\[?\s*|^\s*-\s*)["']\*["']""")
        lines = read(TEMPLATE).splitlines()
        flagged = [(i + 1, l) for i, l in enumerate(lines) if star.search(l)]
        for n, l in flagged:
            self.assertIn(" # ", l, f"template.yaml:{n}: Resource \"*\" without a comment saying why")
        parsed = sum(as_list(s.get("Resource", [])).count("*") for _, s in statements(T))
        self.assertEqual(parsed, len(flagged), "a Resource \"*\" the line scan did not see")

    def test_no_action_wildcards_or_negations(self):
        for where, s in statements(T):
            self.assertNotIn("NotAction", s, where)
            self.assertNotIn("NotResource", s, where)
            self.assertEqual(s["Effect"], "Allow", where)
            for a in as_list(s["Action"]):
                self.assertNotIn("*", a, f"{where}: wildcard action {a}")

    def test_function_roles_hold_exactly_the_calls_they_make(self):
        fns = functions()
        role = lambda name: resolve(T["Resources"][fns[name]]["Properties"]["Role"], P)[1]  # noqa: E731
        coordinator = {
            "logs:CreateLogStream", "logs:PutLogEvents",
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem", "dynamodb:Query",
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility",
            "sqs:SendMessage", "sqs:GetQueueUrl",
            "events:PutEvents", "scheduler:CreateSchedule", "scheduler:DeleteSchedule", "iam:PassRole",
            "s3:PutObject", "s3:GetObject",
        }
        worker = {
            "logs:CreateLogStream", "logs:PutLogEvents",
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility",
            "sqs:SendMessage", "sqs:GetQueueUrl",
            "s3:PutObject", "s3:GetObject",
        }
        # The http calls it runs itself (InlineCallMs) read step secrets as the http worker does.
        coordinator |= {"secretsmanager:GetSecretValue", "bedrock:InvokeModel", "ssm:GetParameter"}
        api = {"logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:GetItem", "dynamodb:Query", "sqs:SendMessage",
               "sqs:GetQueueUrl", "events:PutEvents", "s3:PutObject", "s3:GetObject", "s3:ListBucket",
               "secretsmanager:GetSecretValue"}
        c = allowed(role(f"{PREFIX}-coordinator"))
        w = allowed(role(f"{PREFIX}-worker-http"))
        llm = allowed(role(f"{PREFIX}-worker-llm"))
        self.assertEqual(set(llm), worker | {"secretsmanager:GetSecretValue", "bedrock:InvokeModel"})
        self.assertEqual(llm["sqs:ReceiveMessage"], [("GetAtt", "LlmQueue", "Arn")])
        self.assertEqual(set(llm["sqs:SendMessage"]), {("GetAtt", "CoordinatorQueue", "Arn"), ("GetAtt", "LlmDlq", "Arn")})
        self.assertEqual(llm["secretsmanager:GetSecretValue"],
                         [("Ref", "MessageKeySecret"),
                          f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{PREFIX}/openai-api-key-??????",
                          f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{PREFIX}/openai-api-key"])
        self.assertEqual(llm["bedrock:InvokeModel"], ["arn:aws:bedrock:us-east-1::foundation-model/*",
                                                      "arn:aws:bedrock:us-east-1:123456789012:inference-profile/*"])
        src = read(os.path.join(ROOT, "shared/aws/src/handlers.rs"))
        self.assertIn('"{stack}/openai-api-key"', src, "the worker reads the key the policy names")
        a = allowed(role(f"{PREFIX}-api"))
        self.assertEqual(set(c), coordinator)
        self.assertEqual(c["ssm:GetParameter"], [f"arn:aws:ssm:us-east-1:123456789012:parameter/{PREFIX}/steps/*"])
        self.assertEqual(set(w), worker | {"secretsmanager:GetSecretValue", "ssm:GetParameter"})
        self.assertEqual(w["secretsmanager:GetSecretValue"], [f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{PREFIX}/steps/*",
                                                              ("Ref", "MessageKeySecret")])
        self.assertEqual(w["ssm:GetParameter"], [f"arn:aws:ssm:us-east-1:123456789012:parameter/{PREFIX}/steps/*"])
        self.assertEqual(set(a), api)
        self.assertEqual(a["sqs:SendMessage"], [("GetAtt", "CoordinatorQueue", "Arn")])
        self.assertEqual(a["dynamodb:GetItem"], [("GetAtt", "RunsTable", "Arn")])
        self.assertEqual(a["secretsmanager:GetSecretValue"],
                         [("Ref", "CallbackSecret"), ("Ref", "ApiTokenSecret"), ("Ref", "AuditKeySecret")])
        self.assertEqual(a["events:PutEvents"], [("GetAtt", "EventBus", "Arn")])
        self.assertNotIn("dynamodb:PutItem", a, "the api function writes no run state: the coordinator does")
        self.assertEqual(c["secretsmanager:GetSecretValue"],
                         [("Ref", "CallbackSecret"), ("Ref", "AuditKeySecret"), *llm["secretsmanager:GetSecretValue"],
                          f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{PREFIX}/steps/*"])
        self.assertEqual(llm["secretsmanager:GetSecretValue"][0], ("Ref", "MessageKeySecret"))
        self.assertEqual(c["bedrock:InvokeModel"], llm["bedrock:InvokeModel"])
        # Receiving and deleting only from the function's own queue; the coordinator also from
        # the dead-letter queues, whose strays its sweep fails (dead_lettered).
        dlqs = [("GetAtt", q, "Arn") for q in ("CoordinatorDlq", "HttpDlq", "LlmDlq")]
        self.assertEqual(c["sqs:ReceiveMessage"], [("GetAtt", "CoordinatorQueue", "Arn"), *dlqs])
        self.assertEqual(c["sqs:DeleteMessage"], [("GetAtt", "CoordinatorQueue", "Arn"), *dlqs])
        self.assertEqual(c["sqs:ChangeMessageVisibility"], [("GetAtt", "CoordinatorQueue", "Arn"), *dlqs])
        self.assertEqual(w["sqs:ReceiveMessage"], [("GetAtt", "HttpQueue", "Arn")])
        self.assertEqual(set(w["sqs:SendMessage"]), {("GetAtt", "CoordinatorQueue", "Arn"), ("GetAtt", "HttpDlq", "Arn")})
        self.assertEqual(c["scheduler:CreateSchedule"], [f"arn:aws:scheduler:us-east-1:123456789012:schedule/{PREFIX}/*"])
        self.assertEqual(c["iam:PassRole"], [("GetAtt", "SchedulerRole", "Arn")])
        self.assertEqual(c["s3:PutObject"], ["${PayloadsBucket.Arn}/payloads/*", "${PayloadsBucket.Arn}/state/*",
                                             "${AuditDigestsBucket.Arn}/digests/*"])
        self.assertEqual(c["s3:GetObject"], ["${PayloadsBucket.Arn}/payloads/*", "${PayloadsBucket.Arn}/state/*"])
        self.assertEqual(w["s3:PutObject"], ["${PayloadsBucket.Arn}/payloads/*", "${PayloadsBucket.Arn}/state/*"])
        self.assertEqual(w["dynamodb:PutItem"], [("GetAtt", "RunsTable", "Arn")])
        # Workers write only their claim items: a compromised worker cannot rewrite a run.
        for fn in ("worker-http", "worker-llm"):
            claims = [st for where, st in statements(T) if where.startswith(role(f"{PREFIX}-{fn}") + ".")
                      and "dynamodb:PutItem" in as_list(st["Action"])]
            self.assertEqual(len(claims), 1, fn)
            self.assertEqual(claims[0]["Condition"], {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CLAIM#*"]}}, fn)
        self.assertIn('format!("CLAIM#{key}")', read(os.path.join(ROOT, "shared/aws/src/dynamo.rs")))
        for where, s in statements(T):
            if "iam:PassRole" in as_list(s["Action"]):
                self.assertEqual(s["Condition"], {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}, where)

    def test_audit_seals_are_granted_least_privilege(self):
        """The coordinator (the signer) may only add seals, each once; the api function and the
        operators may only read and list them; nobody may delete them, change their retention or
        the bucket's lock, or bypass it."""
        fns = functions()
        role = lambda name: resolve(T["Resources"][fns[name]]["Properties"]["Role"], P)[1]  # noqa: E731
        bucket, seals = ("GetAtt", "AuditDigestsBucket", "Arn"), "${AuditDigestsBucket.Arn}/digests/*"
        grants = {}  # where -> [(action, resource, condition)]
        for where, st in statements(T):
            for a in as_list(st["Action"]):
                for r in as_list(st.get("Resource", [])):
                    r = resolve(r, P)
                    if r == bucket or (isinstance(r, str) and "AuditDigestsBucket" in r):
                        grants.setdefault(where.split(".")[0], []).append((a, r, st.get("Condition")))
        self.assertEqual(grants.pop(role(f"{PREFIX}-coordinator")),
                         [("s3:PutObject", seals, {"Null": {"s3:if-none-match": "false"}})])
        self.assertIn('.if_none_match("*")', read(os.path.join(ROOT, "shared/aws/src/digest_witness.rs")))
        readers = [("s3:GetObject", seals, None), ("s3:ListBucket", bucket, {"StringLike": {"s3:prefix": "digests/*"}})]
        self.assertEqual(grants.pop(role(f"{PREFIX}-api")), readers)
        (operator,) = of_type(T, "AWS::IAM::ManagedPolicy")
        self.assertEqual(grants.pop(operator), readers)
        self.assertEqual(grants, {}, "no other role or policy touches the seals")
        for where, st in statements(T):
            for a in as_list(st["Action"]):
                self.assertFalse(a.startswith("s3:Delete") or "Retention" in a or "ObjectLock" in a
                                 or a == "s3:BypassGovernanceRetention", f"{where}: {a}")

    def test_operator_policy(self):
        (p,) = of_type(T, "AWS::IAM::ManagedPolicy").values()
        acts = {}
        for s in p["Properties"]["PolicyDocument"]["Statement"]:
            for a in as_list(s["Action"]):
                acts.setdefault(a, []).extend(resolve(r, P) for r in as_list(s["Resource"]))
        rules = f"arn:aws:events:us-east-1:123456789012:rule/{PREFIX}-bus/{PREFIX}-*"
        for a in ("PutRule", "PutTargets", "DescribeRule", "ListTargetsByRule", "RemoveTargets", "DeleteRule"):
            self.assertEqual(acts[f"events:{a}"], [rules], a)
        self.assertEqual(acts["events:ListRules"], ["*"])
        for a in ("GetQueueUrl", "GetQueueAttributes", "SendMessage"):
            self.assertEqual(acts[f"sqs:{a}"], [("GetAtt", "CoordinatorQueue", "Arn")], a)
        # The CLI reads and stores definitions; every change to a run goes to the coordinator.
        self.assertEqual({a for a in acts if a.startswith("dynamodb:")}, {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"})
        self.assertEqual(acts["events:PutEvents"], [("GetAtt", "EventBus", "Arn")])
        self.assertEqual(acts["s3:PutObject"], ["${PayloadsBucket.Arn}/payloads/*"])
        self.assertEqual(acts["s3:GetObject"], ["${PayloadsBucket.Arn}/payloads/*", "${PayloadsBucket.Arn}/state/*",
                                                "${AuditDigestsBucket.Arn}/digests/*"],
                         "reads kept run state and the audit seals; writes none of them")
        self.assertEqual(acts["s3:ListBucket"], [("GetAtt", "AuditDigestsBucket", "Arn")])


def evaluate(node, params):
    """The value of a condition built from Fn::Not, Fn::Equals, Fn::Join and Ref, for `params`."""
    if isinstance(node, dict) and len(node) == 1:
        (k, v), = node.items()
        if k == "Ref":
            return params[v]
        if k == "Fn::Not":
            return not evaluate(v[0], params)
        if k == "Fn::Equals":
            return evaluate(v[0], params) == evaluate(v[1], params)
        if k == "Fn::Join":
            return v[0].join(evaluate(v[1], params))
        raise AssertionError(f"not evaluated here: {k}")
    return node


class MapPolicies(unittest.TestCase):
    """`items_from` sources and results are read and written by the coordinator: the managed
    policies MapPolicyArns lists are attached to its role alone, and none by default."""

    def test_parameter_condition_and_attachment(self):
        p = T["Parameters"]["MapPolicyArns"]
        self.assertEqual((p["Type"], p["Default"]), ("CommaDelimitedList", ""))
        cond = T["Conditions"]["HasMapPolicies"]
        for value, attached in (("", False), ("arn:aws:iam::123456789012:policy/maps", True)):
            self.assertEqual(evaluate(cond, {"MapPolicyArns": value.split(",")}), attached, value)
        fns = functions()
        role = resolve(T["Resources"][fns[f"{PREFIX}-coordinator"]]["Properties"]["Role"], P)[1]
        self.assertEqual(T["Resources"][role]["Properties"]["ManagedPolicyArns"],
                         {"Fn::If": ["HasMapPolicies", {"Ref": "MapPolicyArns"}, {"Ref": "AWS::NoValue"}]})
        users = sorted(k for k, r in T["Resources"].items() if "MapPolicyArns" in json.dumps(r))
        self.assertEqual(users, [role], "only the role of the function that runs the `items` tool")


class AwsToolPolicies(unittest.TestCase):
    """`aws` steps sign with the http worker's role: the managed policies AwsToolPolicyArns lists
    are attached to that role alone, and none by default."""

    def test_parameter_condition_and_attachment(self):
        p = T["Parameters"]["AwsToolPolicyArns"]
        self.assertEqual((p["Type"], p["Default"]), ("CommaDelimitedList", ""))
        cond = T["Conditions"]["HasAwsToolPolicies"]
        # CloudFormation splits the value on commas: the empty default is [""].
        for value, attached in (("", False), ("arn:aws:iam::aws:policy/AmazonSQSFullAccess", True),
                                ("arn:aws:iam::123456789012:policy/a,arn:aws:iam::123456789012:policy/b", True)):
            self.assertEqual(evaluate(cond, {"AwsToolPolicyArns": value.split(",")}), attached, value)
        fns = functions()
        http_role = resolve(T["Resources"][fns[f"{PREFIX}-worker-http"]]["Properties"]["Role"], P)[1]
        self.assertEqual(T["Resources"][http_role]["Properties"]["ManagedPolicyArns"],
                         {"Fn::If": ["HasAwsToolPolicies", {"Ref": "AwsToolPolicyArns"}, {"Ref": "AWS::NoValue"}]})
        users = sorted(k for k, r in T["Resources"].items() if "AwsToolPolicyArns" in json.dumps(r))
        self.assertEqual(users, [http_role], "only the role the aws tool signs with")
        # Why that role and no other: `aws` calls are placed on the http queue, and the coordinator
        # runs only `http` calls inline.
        tools = read(os.path.join(ROOT, "shared/core/src/plan/tools/mod.rs"))
        self.assertRegex(tools, r'"aws"[^=\n]*=> Placement::Worker \{ queue: "http" \}')
        handlers = read(os.path.join(ROOT, "shared/aws/src/handlers.rs"))
        inline = re.search(r"pub fn inline_calls\(.*?\n}\n", handlers, re.S)
        self.assertIsNotNone(inline, "inline_calls in shared/aws/src/handlers.rs")
        self.assertEqual(re.findall(r"tools\.register\(([^,]+),", inline.group(0)),
                         ["baton_core::plan::tools::HTTP_TOOL"])


class ProvisionParity(unittest.TestCase):
    """localstack/provision.py creates exactly the names the template declares (same prefix)."""

    def test_provision_py_creates_the_same_names(self):
        prefix = f"infra-prov-{os.getpid()}-{int(time.time()) % 100000}"
        endpoint = CLIENT_KW["endpoint_url"]
        print(f"\n    running localstack/provision.py --stack {prefix} against {endpoint}", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "localstack/provision.py"), "--endpoint", endpoint,
                        "--stack", prefix], check=True)
        c = lambda name: boto3.client(name, **CLIENT_KW)  # noqa: E731
        ddb, sqs, events, scheduler, s3 = map(c, ("dynamodb", "sqs", "events", "scheduler", "s3"))
        try:
            made = {
                "AWS::DynamoDB::Table": {t for t in ddb.list_tables()["TableNames"] if t.startswith(prefix + "-")},
                "AWS::SQS::Queue": {u.rsplit("/", 1)[1] for u in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])},
                "AWS::Events::EventBus": {b["Name"] for b in events.list_event_buses(NamePrefix=prefix)["EventBuses"]},
                "AWS::Scheduler::ScheduleGroup": {g["Name"] for g in scheduler.list_schedule_groups(NamePrefix=prefix)["ScheduleGroups"]},
                "AWS::S3::Bucket": {b["Name"] for b in s3.list_buckets().get("Buckets", []) if b["Name"].startswith(prefix + "-")},
            }
            for type_, got in made.items():
                self.assertEqual(got, set(names(T, type_, prefix)), type_)
            tmpl = T["Resources"][names(T, "AWS::DynamoDB::Table", prefix)[f"{prefix}-runs"]]["Properties"]
            table = ddb.describe_table(TableName=f"{prefix}-runs")["Table"]
            key = lambda ks: [(k["AttributeName"], k["KeyType"]) for k in ks]  # noqa: E731
            self.assertEqual(key(table["KeySchema"]), key(tmpl["KeySchema"]))
            self.assertEqual({g["IndexName"]: key(g["KeySchema"]) for g in table["GlobalSecondaryIndexes"]},
                             {g["IndexName"]: key(g["KeySchema"]) for g in tmpl["GlobalSecondaryIndexes"]})
            ttl = ddb.describe_time_to_live(TableName=f"{prefix}-runs")["TimeToLiveDescription"]
            self.assertEqual(ttl.get("AttributeName"), tmpl["TimeToLiveSpecification"]["AttributeName"])
            tmpl_lock = by_name("AWS::S3::Bucket", f"{PREFIX}-audit-digests")["ObjectLockConfiguration"]
            lock = s3.get_object_lock_configuration(Bucket=f"{prefix}-audit-digests")["ObjectLockConfiguration"]
            days = T["Parameters"]["AuditDigestRetentionDays"]["Default"]
            self.assertEqual(lock, {"ObjectLockEnabled": "Enabled",
                                    "Rule": {"DefaultRetention": {"Mode": tmpl_lock["Rule"]["DefaultRetention"]["Mode"],
                                                                  "Days": days}}})
            self.assertEqual(s3.get_bucket_versioning(Bucket=f"{prefix}-audit-digests")["Status"], "Enabled")
            for name in made["AWS::SQS::Queue"]:
                if name.endswith("-dlq"):
                    continue
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                redrive = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
                self.assertEqual(int(redrive["maxReceiveCount"]), 5, name)
                self.assertTrue(redrive["deadLetterTargetArn"].endswith(f":{name}-dlq"), redrive)
            print(f"    provision.py and the template agree: {sum(len(v) for v in made.values())} names", flush=True)
        finally:
            for t in made_or_empty(locals(), "AWS::DynamoDB::Table"):
                ddb.delete_table(TableName=t)
            for q in made_or_empty(locals(), "AWS::SQS::Queue"):
                sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=q)["QueueUrl"])
            for b in made_or_empty(locals(), "AWS::Events::EventBus"):
                events.delete_event_bus(Name=b)
            for g in made_or_empty(locals(), "AWS::Scheduler::ScheduleGroup"):
                scheduler.delete_schedule_group(Name=g)
            for b in made_or_empty(locals(), "AWS::S3::Bucket"):
                s3.delete_bucket(Bucket=b)


def made_or_empty(scope, type_):
    return sorted(scope.get("made", {}).get(type_, ()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
