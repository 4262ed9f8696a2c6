#!/usr/bin/env python3
"""A resilienced agent in plain Python 3: a template to start from.

resilienced runs this program as a child process and talks to it over its
standard streams with JSON-RPC 2.0, one JSON object per line:

  stdin   requests and notifications from resilienced, one per line
  stdout  responses, one per line; write nothing else here and flush each one
  stderr  your log; resilienced captures it, labelled with the agent's name

The native protocol ("protocol: jsonrpc" in the pool's config) has three
methods:

  initialize  {"agent": NAME, "pool": POOL, "protocol": "resilient/1"}
              -> any result; answering it says the agent is ready.
  ping        {} -> {}; a liveness check while the agent is idle.
  task/run    {"session": ID or null,
               "context": [{"input": ..., "output": ...}, ...],
               "input": ...,
               "feedback": "..."}       (only when a previous try was rejected)
              -> the result, which resilienced checks against the pool's
                 output contract (JSON Schema, size, tokens, deadline).

The call method is "task/run" unless the pool configures another name;
pass --method NAME to match. A message without an "id" is a notification:
never answer it. Answer an unknown method with error -32601 and a line that
is not JSON with error -32700 and id null.

Keep no state between calls: the context travels with every call, so that
resilienced can kill this process at any moment and let a spare continue the
session. An output that breaks the contract is never added to the context;
resilienced retries the call elsewhere, optionally with "feedback" saying
what was wrong.

Zygote mode ("start: zygote" in the pool's config): resilienced starts this
program once, with RESILIENT_ZYGOTE_FD naming a socket. It initializes
(imports, model clients, caches: whatever a fresh start would cost), then
forks a ready child for each agent on request: see zygote() below and
docs/PROTOCOL.md. The child serves exactly as a freshly started agent does.

This template answers task/run by echoing its input:
  {"answer": <input as a string>, "context_len": N, "usage": {"total_tokens": K}}
plus "feedback_seen": true when the call carried feedback. Replace run_task
with your own work.
"""

import argparse
import gc
import json
import math
import os
import signal
import socket
import sys

PROTOCOL = "resilient/1"

# JSON-RPC 2.0 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class RPCError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def log(msg):
    print("python-agent: " + msg, file=sys.stderr, flush=True)


def run_task(params):
    """Does the work of one call and returns its result.

    params holds "session", "context", "input" and maybe "feedback".
    """
    if "input" not in params:
        raise RPCError(INVALID_PARAMS, "invalid params: input is missing")
    task_input = params["input"]
    context = params.get("context") or []
    if isinstance(task_input, str):
        answer = task_input
    else:
        answer = json.dumps(task_input, separators=(",", ":"))
    result = {
        "answer": answer,
        "context_len": len(context),
        # Report real token usage here if you have it; the contract can
        # read it (tokens_pointer: /usage/total_tokens).
        "usage": {"total_tokens": math.ceil(len(json.dumps(params)) / 4)},
    }
    if params.get("feedback") is not None:
        result["feedback_seen"] = True
    return result


class Agent:
    def __init__(self, method):
        self.method = method
        self.name = ""

    def dispatch(self, method, params):
        if method == "initialize":
            self.name = params.get("agent", "")
            log("initialized as agent %r of pool %r" % (self.name, params.get("pool")))
            return {"name": "python-agent", "protocol": PROTOCOL}
        if method == "ping":
            return {}
        if method == self.method:
            return run_task(params)
        raise RPCError(METHOD_NOT_FOUND, "method not found: " + method)

    def handle(self, line):
        """Returns the response to one line, or None when there is none."""
        try:
            msg = json.loads(line.decode("utf-8"))  # bad UTF-8 is a ValueError too
        except (ValueError, RecursionError) as e:
            return error_response(None, PARSE_ERROR, "parse error: %s" % e)

        if not isinstance(msg, dict):
            return error_response(None, INVALID_REQUEST, "invalid request: not an object")
        is_notification = "id" not in msg
        msg_id = msg.get("id")
        method = msg.get("method")
        if msg.get("jsonrpc") != "2.0" or not isinstance(method, str) or not method:
            if is_notification:
                return None
            return error_response(msg_id, INVALID_REQUEST,
                                  'invalid request: want "jsonrpc": "2.0" and a method')
        if is_notification:
            return None  # never answer a notification

        params = msg.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return error_response(msg_id, INVALID_PARAMS, "invalid params: not an object")
        try:
            result = self.dispatch(method, params)
        except RPCError as e:
            return error_response(msg_id, e.code, e.message)
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_response(msg_id, code, message):
    log("error %d: %s" % (code, message))
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def zygote(fd, method):
    """Forks a ready agent for each request on the socket fd, until it closes.

    A request is one message {"id": AGENT} carrying three or four file
    descriptors (SCM_RIGHTS): the child's stdin, stdout and stderr, and,
    when there is a fourth, the agent's cgroup.procs open for writing. The
    answer is one message {"id": AGENT, "pid": PID}, or {"id": AGENT,
    "error": TEXT}. The child writes "0" to the fourth descriptor (it
    enters its cgroup) before it reads its stdin: the daemon may have
    written initialize there already. Without a fourth, the daemon places
    the child itself before it sends initialize.
    """
    sock = socket.socket(fileno=fd)
    # Children are reaped by the kernel: their exit is the daemon's to see.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # What the zygote built is shared with every child: keep the collector
    # off it, so that a child's collections neither scan it nor copy the
    # pages it touches (copy-on-write).
    gc.collect()
    gc.freeze()
    log("zygote ready in pid %d" % os.getpid())
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 4)
        except OSError as e:
            log("zygote socket: %s" % e)
            return
        if not msg:
            return  # the daemon closed the socket
        agent_id = ""
        try:
            agent_id = json.loads(msg).get("id", "")
            if len(fds) not in (3, 4):
                raise ValueError("want 3 or 4 file descriptors, got %d" % len(fds))
            pid = os.fork()
        except (ValueError, OSError, AttributeError) as e:
            for f in fds:
                os.close(f)
            sock.send(json.dumps({"id": agent_id, "error": str(e)}).encode())
            continue
        if pid == 0:
            if len(fds) == 4:
                try:
                    os.write(fds[3], b"0")  # into the agent's cgroup, first
                except OSError as e:
                    log("entering the cgroup: %s (the daemon will place me)" % e)
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()  # a process group of its own, as a started agent has
            for i, f in enumerate(fds[:3]):
                os.dup2(f, i)
            for f in fds:
                if f > 2:
                    os.close(f)
            os.environ["RESILIENT_AGENT_ID"] = agent_id
            try:
                serve(method)
            finally:
                os._exit(0)
        for f in fds:
            os.close(f)
        sock.send(json.dumps({"id": agent_id, "pid": pid}).encode())


def main():
    parser = argparse.ArgumentParser(description="Echo agent for resilienced.")
    parser.add_argument("--method", default="task/run", help="name of the call method")
    args = parser.parse_args()

    zfd = os.environ.get("RESILIENT_ZYGOTE_FD")
    if zfd:
        zygote(int(zfd), args.method)
        return
    serve(args.method)


def serve(method):
    agent = Agent(method)
    log("started")
    # Read bytes line by line: readline returns as soon as a line is in,
    # and bad UTF-8 becomes a parse error instead of an exception here.
    for line in iter(sys.stdin.buffer.readline, b""):
        if not line.strip():
            continue
        response = agent.handle(line)
        if response is not None:
            # ensure_ascii keeps each response on one line whatever it holds.
            sys.stdout.write(json.dumps(response, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    log("stdin closed, exiting")


if __name__ == "__main__":
    main()
