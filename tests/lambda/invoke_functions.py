"""Runs baton's four function binaries as Lambdas under `cargo lambda watch` and drives a workflow
through them against the emulator stack, with the event shapes AWS delivers:

  1. `baton publish` a workflow with an EventBridge trigger; an event put on the bus reaches the
     coordinator queue through the trigger rule (EventBridge to SQS, on the emulator).
  2. coordinator: an SQS batch of that event plus one malformed record. Expected: no
     `batchItemFailures` (the malformed one is dead-lettered with its reason), a run started, and
     its http call on the http queue.
  3. worker-http: an SQS batch of that call plus a malformed record. Expected: the call reached the
     local service once, the result is on the coordinator queue, the malformed record on the DLQ.
  4. coordinator: the result, plus the sweep message the Scheduler schedule sends. Expected: the
     run succeeded with the service's answer in its output.
  5. worker-llm: a batch with a malformed record only (dead-lettered, no failure reported).
  6. api: Function URL requests: `GET /api/runs/{id}` with the bearer token (200, the run),
     without it (401).

Each function's first response time under `watch` (the binary prebuilt) is its cold start here;
the script prints it with each package's size.
Usage: invoke_functions.py --endpoint URL --stack NAME --baton PATH --port PORT --cargo-lambda DIR
"""
import argparse
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUNCTIONS = ("coordinator", "worker-http", "worker-llm", "api")
TOKEN = "lambda-test-token"


def step(msg):
    print(f"  - {msg}", flush=True)


class Service(http.server.BaseHTTPRequestHandler):
    """The workflow's http step calls this; each call is recorded."""
    calls = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        Service.calls.append((self.path, body, self.headers.get("idempotency-key")))
        out = json.dumps({"shipped": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def record(body, queue_arn, n=1):
    """An SQS event record as the event source mapping delivers it."""
    return {
        "messageId": str(uuid.uuid4()), "receiptHandle": f"handle-{uuid.uuid4()}", "body": body,
        "attributes": {"ApproximateReceiveCount": str(n), "SentTimestamp": str(int(time.time() * 1000)),
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


class Stack:
    def __init__(self, endpoint, name):
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        self.sqs, self.events = boto3.client("sqs", **kw), boto3.client("events", **kw)
        self.name = name

    def url(self, queue):
        return self.sqs.get_queue_url(QueueName=f"{self.name}-{queue}")["QueueUrl"]

    def arn(self, queue):
        return self.sqs.get_queue_attributes(QueueUrl=self.url(queue), AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def take(self, queue, want, timeout=30):
        """Receives and deletes messages until one whose body contains `want`; returns its body."""
        url, deadline = self.url(queue), time.time() + timeout
        while time.time() < deadline:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           MessageAttributeNames=["All"]).get("Messages", [])
            found = None
            for m in got:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                if want in m["Body"] and found is None:
                    found = m
            if found:
                return found
        raise AssertionError(f"nothing with {want!r} on {self.name}-{queue} in {timeout}s")

    def purge(self, queue):
        url = self.url(queue)
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return
            for m in got:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def invoke(port, function, event, timeout=300):
    """POSTs to the Lambda Invoke API `cargo lambda watch` serves; returns (status, body, seconds)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
                                 data=json.dumps(event).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    start = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), time.time() - start
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), time.time() - start


def url_request(method, path, token=None):
    """A Lambda Function URL request (payload format 2.0)."""
    headers = {"host": "abc.lambda-url.us-east-1.on.aws", "content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "", "headers": headers,
        "requestContext": {"accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
                           "domainPrefix": "abc", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                                           "sourceIp": "127.0.0.1", "userAgent": "test"},
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "time": "06/Dec/2026:00:00:00 +0000", "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": False,
    }


def main():
    p = argparse.ArgumentParser()
    for a in ("--endpoint", "--stack", "--baton", "--port", "--cargo-lambda"):
        p.add_argument(a, required=True)
    a = p.parse_args()
    stack = Stack(a.endpoint, a.stack)
    for q in ("coordinator", "http", "llm", "coordinator-dlq", "http-dlq", "llm-dlq"):
        stack.purge(q)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    env = dict(os.environ, BATON_STACK=a.stack, AWS_ENDPOINT_URL=a.endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", BATON_MODEL_PROVIDER="none",
               BATON_CALLBACK_SECRET="a-signing-key-of-at-least-thirty-two-bytes!", BATON_API_TOKEN=TOKEN,
               # The workflow calls a service on loopback: a Lambda worker refuses loopback unless told.
               BATON_ALLOW_LOOPBACK="1", RUST_LOG="warn",
               PATH=f"{a.cargo_lambda}:{os.environ['PATH']}")
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    env.pop("AWS_PROFILE", None)

    # 1. Publish, and put an event the trigger matches.
    nonce = uuid.uuid4().hex[:8]
    wf = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lambda-demo-{nonce}.yaml")
    with open(wf, "w") as f:
        f.write(f"""name: lambda-demo-{nonce}
triggers:
  - event: {{source: [lambda.test.{nonce}], detail-type: [OrderPlaced]}}
output: "{{order: .input.detail.order, shipped: .steps.ship.output.body.shipped}}"
steps:
  - id: ship
    tool: http
    with: {{method: POST, url: "{{{{ .input.detail.base }}}}/ship/{{{{ .input.detail.order }}}}"}}
""")
    out = subprocess.run([a.baton, "--backend", "aws", "--stack", a.stack, "publish", wf], env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    stack.events.put_events(Entries=[{"EventBusName": f"{a.stack}-bus", "Source": f"lambda.test.{nonce}",
                                      "DetailType": "OrderPlaced",
                                      "Detail": json.dumps({"order": "o-42", "base": base})}])
    delivered = stack.take("coordinator", nonce)["Body"]
    step(f"published lambda-demo-{nonce}; the event reached the coordinator queue through the trigger rule")

    watch = subprocess.Popen(["cargo", "lambda", "watch", "--ignore-changes", "--invoke-port", a.port],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open("/tmp/cargo-lambda-watch.log", "w"),
                             start_new_session=True)
    try:
        for _ in range(240):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", int(a.port))) == 0:
                    break
            time.sleep(0.5)
        else:
            raise AssertionError("cargo lambda watch did not listen; see /tmp/cargo-lambda-watch.log")
        cold = {}

        # 2. The coordinator takes the event and one malformed record.
        poison = f"{{not json {nonce}"
        status, body, secs = invoke(a.port, "coordinator", {"Records": [
            record(poison, stack.arn("coordinator")), record(delivered, stack.arn("coordinator"))]})
        cold["coordinator"] = secs
        assert status == 200 and body == {"batchItemFailures": []}, (status, body)
        dead = stack.take("coordinator-dlq", nonce)
        assert "not JSON" in dead["MessageAttributes"]["baton-reason"]["StringValue"], dead
        call = stack.take("http", "ship")
        step("coordinator: event + malformed record -> batchItemFailures [], the malformed one on the DLQ "
             f"({dead['MessageAttributes']['baton-reason']['StringValue'][:60]}...), the http call on the http queue")

        # 3. The http worker runs the call.
        status, body, secs = invoke(a.port, "worker-http", {"Records": [
            record(call["Body"], stack.arn("http")), record(poison, stack.arn("http"))]})
        cold["worker-http"] = secs
        assert status == 200 and body == {"batchItemFailures": []}, (status, body)
        assert [c[0] for c in Service.calls] == ["/ship/o-42"], Service.calls
        assert Service.calls[0][2], "the call carries an idempotency key"
        result = stack.take("coordinator", '"result"')
        stack.take("http-dlq", nonce)
        step("worker-http: the call reached the service once (with an idempotency key), its result is on "
             "the coordinator queue, the malformed record on the DLQ")

        # 4. The coordinator takes the result and a Scheduler-delivered sweep.
        status, body, _ = invoke(a.port, "coordinator", {"Records": [
            record(result["Body"], stack.arn("coordinator")), record('{"kind":"sweep"}', stack.arn("coordinator"))]})
        assert status == 200 and body == {"batchItemFailures": []}, (status, body)
        out = subprocess.run([a.baton, "--backend", "aws", "--stack", a.stack, "runs", "list", "--json",
                              "--limit", "500"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        runs = [r for r in json.loads(out.stdout) if r["workflow"] == f"lambda-demo-{nonce}"]
        assert len(runs) == 1 and runs[0]["status"] == "succeeded", runs
        run_id = runs[0]["run_id"]
        step(f"coordinator: result + sweep -> run {run_id} succeeded")

        # 5. The llm worker dead-letters a malformed record.
        status, body, secs = invoke(a.port, "worker-llm", {"Records": [record(poison, stack.arn("llm"))]})
        cold["worker-llm"] = secs
        assert status == 200 and body == {"batchItemFailures": []}, (status, body)
        stack.take("llm-dlq", nonce)
        step("worker-llm: malformed record -> batchItemFailures [], on the DLQ")

        # 6. The api behind a function URL.
        status, body, secs = invoke(a.port, "api", url_request("GET", f"/api/runs/{run_id}", TOKEN))
        cold["api"] = secs
        assert status == 200 and body["statusCode"] == 200, (status, body)
        run = json.loads(body["body"])
        assert run["status"] == "succeeded" and run["output"] == {"order": "o-42", "shipped": True}, run
        status, body, _ = invoke(a.port, "api", url_request("GET", f"/api/runs/{run_id}"))
        assert status == 200 and body["statusCode"] == 401, (status, body)
        step(f"api: GET /api/runs/{run_id} -> 200 with the run's output; without the token -> 401")
        # The same function behind the function URL `watch` emulates, over plain HTTP.
        req = urllib.request.Request(f"http://127.0.0.1:{a.port}/lambda-url/api/api/runs/{run_id}",
                                     headers={"authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200, r.status
            assert json.loads(r.read())["status"] == "succeeded"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{a.port}/lambda-url/api/api/runs", timeout=60)
            raise AssertionError("the API answered without a token")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        step("api behind the function URL (HTTP through watch): 200 with the token, 401 without")
        retried = []
        for path, kind, text in (("/", "text/html", "<script"), ("/console/app.js", "text/javascript", "/api/runs")):
            url = f"http://127.0.0.1:{a.port}/lambda-url/api{path}"
            try:
                r = urllib.request.urlopen(url, timeout=60)
            except urllib.error.HTTPError as e:
                # `watch` answered 500 here once in CI (stop 31) with nothing in its log; the
                # body says whether the function or the emulator failed. Asked once more, and
                # the retry is printed, so a repeat shows in the log rather than passing quietly.
                detail = e.read().decode(errors="replace")[:500]
                assert e.code >= 500, (path, e.code, detail)
                retried.append(f"{path}: {e.code} {detail!r}")
                time.sleep(1)
                r = urllib.request.urlopen(url, timeout=60)
            with r:
                body = r.read().decode()
                assert r.status == 200 and r.headers["content-type"].startswith(kind), (path, r.headers)
                assert text in body, (path, body[:200])
        step("api serves the web console at / and its script, without a token"
             + (f" (asked twice: {'; '.join(retried)})" if retried else ""))

        for name in FUNCTIONS:
            package = os.path.join(ROOT, "target", "lambda", name, "bootstrap.zip")
            size = os.path.getsize(package) / 1e6 if os.path.exists(package) else float("nan")
            step(f"{name}: package {size:.1f} MB, first response under watch {cold[name] * 1000:.0f} ms")
    finally:
        os.killpg(watch.pid, signal.SIGTERM)
        watch.wait(timeout=20)
        server.shutdown()
    print("functions under cargo lambda watch: ok")


if __name__ == "__main__":
    sys.exit(main())
