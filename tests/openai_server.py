"""A small OpenAI-compatible chat-completions server on 127.0.0.1 that misbehaves on command.

Replies come from a script of (prompt, seed). Faults are injected two ways: ``faults``, a queue
of (status, headers) or fault names that the next requests get instead of a reply, and
``plan``, a function of the request's index returning a fault name or None. Every request's
body and headers are kept (``requests``, ``headers``) and every fault served is counted
(``injected``), so tests can check retries, accounting and that no model was swapped.

Fault names: ``429`` (no Retry-After), ``429-retry-after``, ``500``, ``503``, ``reset`` (the
connection is closed without a reply), ``timeout`` (the reply comes after ``slow_s``),
``empty`` (an empty reply), ``no-format`` (prose without the answer format), ``huge`` (a
100 kB reply), ``bad-utf8`` (invalid UTF-8 in the body), ``echo`` (the prompt sent back),
``leak`` (a 400 whose message repeats the request's Authorization header).

``honour_n=True`` answers a request's ``n`` with n choices (choice i is ``script(prompt, seed + i)``;
by default it ignores ``n``, as llama.cpp's server does), and ``cached_tokens`` is the number of
prompt tokens each reply reports as served from a prompt cache (OpenAI's ``prompt_tokens_details``).

``answered`` counts, by :func:`request_key` (the request's prompt and seed), the well-formed 200
replies the client could read: every reply but a ``timeout``'s (sent after the client gave up)
and a ``bad-utf8`` one. The fault suite's audit matches them, request by request, with the calls
a run recorded.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

FAULTS = ("429", "429-retry-after", "500", "503", "reset", "timeout", "empty", "no-format", "huge", "bad-utf8",
          "echo", "leak")


def request_key(body: dict[str, Any]) -> tuple[str, int]:
    """A request's (prompt, seed): its last message's text and its sampling seed. A client's
    retries of one call share it; a run's calls (one seed per trial number) do not."""
    content = body["messages"][-1]["content"]
    prompt = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    return prompt, int(body.get("seed", 0))


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog (5) drops some of 8+ simultaneous connections
    # (every reply is HTTP/1.0, one connection per call) and the client retries a second later.
    request_queue_size = 128


class OpenAIServer:
    def __init__(self, script: Callable[[str, int], str], *, plan: Callable[[int], str | None] | None = None,
                 slow_s: float = 3.0, honour_n: bool = False, cached_tokens: int = 0) -> None:
        self.script, self.plan, self.slow_s = script, plan, slow_s
        self.honour_n, self.cached_tokens = honour_n, cached_tokens
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: list[Any] = []
        self.injected: collections.Counter[str] = collections.Counter()
        self.replies = 0  # well-formed 200 replies served
        self.answered: collections.Counter[tuple[str, int]] = collections.Counter()  # read by the client, by key
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    index = len(server.requests)
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else (server.plan(index) if server.plan else None)
                    if fault is not None:
                        server.injected[fault if isinstance(fault, str) else str(fault[0])] += 1
                if isinstance(fault, tuple):
                    self._error(fault[0], f"injected {fault[0]}", fault[1])
                    return
                prompt = request_key(body)[0]
                if fault in ("429", "500", "503"):
                    self._error(int(fault), f"injected {fault}", {})
                elif fault == "429-retry-after":
                    self._error(429, "injected 429", {"Retry-After": "1"})
                elif fault == "leak":
                    self._error(400, f"bad request from {self.headers.get('Authorization')}", {})
                elif fault == "reset":
                    # RST instead of a reply: SO_LINGER with a zero timeout, then close.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif fault == "bad-utf8":
                    self._send(200, self._reply(body, "placeholder", prompt).replace(b"placeholder", b"\xff\xfe\xc3("), {})
                else:
                    if fault == "timeout":
                        time.sleep(server.slow_s)
                    text = {"empty": "", "no-format": "I would rather talk about the weather today.",
                            "huge": "la " * 34000, "echo": prompt}.get(fault or "", None)
                    if text is None:
                        text = server.script(prompt, int(body.get("seed", 0)))
                    with server.lock:
                        server.replies += 1
                    try:
                        self._send(200, self._reply(body, text, prompt), {})
                    except OSError:  # the client gave up (a timeout): nothing to answer
                        return
                    if fault != "timeout":  # a timeout's reply comes after the client gave up
                        with server.lock:
                            server.answered[request_key(body)] += 1

            def _reply(self, body: dict[str, Any], text: str, prompt: str) -> bytes:
                texts = [text]
                if server.honour_n and int(body.get("n", 1)) > 1:
                    texts += [server.script(prompt, int(body.get("seed", 0)) + i) for i in range(1, int(body["n"]))]
                completion = sum(len(t.split()) for t in texts)
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": completion,
                         "total_tokens": len(prompt.split()) + completion}
                if server.cached_tokens:
                    usage["prompt_tokens_details"] = {"cached_tokens": min(server.cached_tokens, len(prompt.split()))}
                reply = {"id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                         "created": int(time.time()), "model": body["model"],
                         "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                                     for i, t in enumerate(texts)],
                         "usage": usage}
                return json.dumps(reply).encode()

            def _error(self, status: int, message: str, headers: dict[str, str]) -> None:
                payload = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
                self._send(status, payload, headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "OpenAIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
