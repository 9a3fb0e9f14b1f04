"""Cold start of a packaged function, measured the way Lambda starts it: unzips
target/lambda/<name>/bootstrap.zip, starts `bootstrap` against a minimal Lambda Runtime API served
here, hands it one event, and reports the time from the process start to its response (init plus
the first invocation), and the package's size. Not part of CI (the release packages take about
18 minutes to build on 2 cores); docs/aws.md gives its figures.

Usage: cold_start.py --endpoint URL --stack NAME [--runs N] [--packages DIR] NAME...
(`--packages` holds `<name>/bootstrap.zip`; default target/lambda.)
The coordinator and workers get an SQS batch with one malformed record (answered without AWS
calls beyond the dead-letter send); the api function a Function URL `GET /health`.
"""
import argparse
import http.server
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def event_for(name, stack):
    if name == "api":
        return {"version": "2.0", "routeKey": "$default", "rawPath": "/health", "rawQueryString": "",
                "headers": {"host": "abc.lambda-url.us-east-1.on.aws"},
                "requestContext": {"http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                                            "sourceIp": "127.0.0.1", "userAgent": "cold-start"},
                                   "requestId": "r", "routeKey": "$default", "stage": "$default",
                                   "accountId": "anonymous", "apiId": "abc", "domainName": "abc",
                                   "domainPrefix": "abc", "time": "", "timeEpoch": 0},
                "isBase64Encoded": False}
    queue = "coordinator" if name == "coordinator" else name.removeprefix("worker-")
    return {"Records": [{"messageId": "m1", "receiptHandle": "h", "body": "{not json",
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": f"arn:aws:sqs:us-east-1:000000000000:{stack}-{queue}",
                         "awsRegion": "us-east-1"}]}


def measure(binary, name, endpoint, stack):
    done = threading.Event()
    answer = {}
    event = json.dumps(event_for(name, stack)).encode()

    class RuntimeApi(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("/invocation/next") and not answer:
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:us-east-1:0:function:{name}")
                self.send_header("Content-Length", str(len(event)))
                self.end_headers()
                self.wfile.write(event)
            else:
                time.sleep(30)  # the next poll after the measured one: hold it

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            answer["at"] = time.perf_counter()
            answer["path"] = self.path
            answer["body"] = body.decode(errors="replace")
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            done.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
               AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", BATON_STACK=stack, AWS_ENDPOINT_URL=endpoint,
               AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               BATON_CALLBACK_SECRET="a-signing-key-of-at-least-thirty-two-bytes!", RUST_LOG="warn")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(60):
            raise SystemExit(f"{name}: no response in 60 s")
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
    assert "/invocation/req-1/response" in answer["path"], answer
    return (answer["at"] - start) * 1000


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", default="http://127.0.0.1:4566")
    p.add_argument("--stack", default="lambda-test")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--packages", default=os.path.join(ROOT, "target", "lambda"))
    p.add_argument("names", nargs="+")
    a = p.parse_args()
    for name in a.names:
        package = os.path.join(a.packages, name, "bootstrap.zip")
        with tempfile.TemporaryDirectory() as d:
            with zipfile.ZipFile(package) as z:
                z.extractall(d)
            binary = os.path.join(d, "bootstrap")
            os.chmod(binary, 0o755)
            times = [measure(binary, name, a.endpoint, a.stack) for _ in range(a.runs)]
            print(f"{name}: package {os.path.getsize(package) / 1e6:.1f} MB, bootstrap "
                  f"{os.path.getsize(binary) / 1e6:.1f} MB, start to first response "
                  f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
