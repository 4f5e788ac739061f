#!/usr/bin/env python3
"""Runs a Firehose processing Lambda handler behind spillway's `command` processor.

    [[processors]]
    type = "command"
    command = ["python3", "contrib/firehose_handler_runner.py", "handlers/enrich.py"]

The handler file is loaded as a module and its `lambda_handler(event, context)`
(or the function named by `--handler NAME`) is called with each event, exactly
as AWS Lambda's Python runtime calls it, so a function written for Firehose
(the blueprints' shape) runs unchanged.

The line protocol: one event per line on standard input; one line per event
on standard output, the handler's return value as JSON, or, if the handler
raised, Lambda's error object {"errorMessage", "errorType", "stackTrace"}
(spillway counts that as a function error and retries the batch). Whatever
the handler prints goes to standard error, so that it cannot break the
protocol. The runner ends when its standard input does.

Only the Python standard library is used.
"""

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
import uuid


class Context:
    """The parts of Lambda's context object a handler may read."""

    def __init__(self, function_name, timeout_ms):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + function_name
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/" + function_name
        self.log_stream_name = "spillway"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load(path, name):
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path
    )
    module = importlib.util.module_from_spec(spec)
    # Imports beside the handler work, as in a Lambda deployment package.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(module)
    return getattr(module, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("handler_file")
    parser.add_argument("--handler", default="lambda_handler")
    parser.add_argument("--timeout-ms", type=int, default=300_000)
    args = parser.parse_args()

    # The protocol keeps the real standard output; fd 1 (print, logging to
    # stdout) becomes standard error.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    handler = load(args.handler_file, args.handler)
    function_name = os.path.splitext(os.path.basename(args.handler_file))[0]
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            answer = handler(event, Context(function_name, args.timeout_ms))
            out = json.dumps(answer, separators=(",", ":"))
        except Exception as error:  # the handler's failure is the function's
            out = json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": type(error).__name__,
                    "stackTrace": traceback.format_exc().splitlines(),
                },
                separators=(",", ":"),
            )
        protocol.write(out + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
