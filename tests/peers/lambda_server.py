#!/usr/bin/env python3
"""A Lambda Invoke API server for spillway's tests.

    lambda_server.py HANDLERS_DIR

Serves `POST /2015-03-31/functions/{name}/invocations` as the Lambda API (and
the Lambda runtime interface emulator) does: it runs `lambda_handler(event,
context)` from HANDLERS_DIR/{name}.py (name may be an ARN or carry a
:qualifier) and answers its return value as JSON, or, if the handler raised,
Lambda's error object with `X-Amz-Function-Error: Unhandled`. A missing
handler file is a 404 ResourceNotFoundException.

Faults a real Lambda shows, on demand, through a control endpoint:

    POST /control/{name}  {"throttle": n, "function_error": n, "delay_seconds": s}

makes the next n calls of {name} answer 429 TooManyRequestsException, or a
function error, and every call wait s seconds first.
`GET /control/{name}` answers {"calls": n, "record_ids": [[...], ...],
"events": k}: the calls so far and the recordIds of each.

It listens on 127.0.0.1 on a free port and prints `port N` on its first line.
Only the standard library is used.
"""

import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANDLERS = sys.argv[1]
# Imports beside a handler work, as in a Lambda deployment package.
sys.path.insert(0, os.path.abspath(HANDLERS))
LOCK = threading.Lock()
STATE = {}  # name -> {"calls", "record_ids", "throttle", "function_error", "delay"}
MODULES = {}


def state(name):
    return STATE.setdefault(
        name, {"calls": 0, "record_ids": [], "throttle": 0, "function_error": 0, "delay": 0.0}
    )


def function_name(path_name):
    # arn:aws:lambda:region:account:function:name[:qualifier] or name[:qualifier]
    if path_name.startswith("arn:"):
        path_name = path_name.split(":", 6)[6]
    return path_name.split(":")[0]


def handler_for(name):
    with LOCK:
        if name not in MODULES:
            path = os.path.join(HANDLERS, name + ".py")
            if not os.path.isfile(path):
                return None
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            MODULES[name] = module.lambda_handler
        return MODULES[name]


class Context:
    def __init__(self, name):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:" + name
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/" + name
        self.log_stream_name = "test"
        self._deadline = time.monotonic() + 300

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "control":
            with LOCK:
                s = state(parts[1])
                self.reply(200, {"calls": s["calls"], "record_ids": s["record_ids"]})
            return
        self.reply(404, {"message": "not found"})

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "control":
            order = json.loads(self.body() or b"{}")
            with LOCK:
                s = state(parts[1])
                s["throttle"] = order.get("throttle", s["throttle"])
                s["function_error"] = order.get("function_error", s["function_error"])
                s["delay"] = order.get("delay_seconds", s["delay"])
            self.reply(200, {})
            return
        if len(parts) != 4 or parts[0] != "2015-03-31" or parts[1] != "functions" or parts[3] != "invocations":
            self.reply(404, {"message": "not found"})
            return
        from urllib.parse import unquote

        name = function_name(unquote(parts[2]))
        payload = self.body()
        handler = handler_for(name)
        if handler is None:
            self.reply(
                404,
                {"Type": "User", "message": "Function not found: " + name},
                [("x-amzn-ErrorType", "ResourceNotFoundException")],
            )
            return
        event = json.loads(payload)
        with LOCK:
            s = state(name)
            s["calls"] += 1
            s["record_ids"].append([r.get("recordId") for r in event.get("records", [])])
            delay = s["delay"]
            throttle = s["throttle"] > 0
            if throttle:
                s["throttle"] -= 1
            function_error = not throttle and s["function_error"] > 0
            if function_error:
                s["function_error"] -= 1
        if delay:
            time.sleep(delay)
        if throttle:
            self.reply(
                429,
                {"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
                [("x-amzn-ErrorType", "TooManyRequestsException")],
            )
            return
        try:
            if function_error:
                raise RuntimeError("injected function error")
            answer = handler(event, Context(name))
            data = json.dumps(answer).encode()
            self.reply(200, data)
        except Exception as error:
            self.reply(
                200,
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exc().splitlines(),
                },
                [("X-Amz-Function-Error", "Unhandled")],
            )


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    print("port", server.server_address[1], flush=True)
    # What handlers print is their log: standard error, as the test reads
    # only the first line of standard output.
    sys.stdout = sys.stderr
    server.serve_forever()


if __name__ == "__main__":
    main()
