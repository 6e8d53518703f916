"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

Replies come from a script of (prompt, seed); ``faults`` is a queue of (status, headers) that
the next requests answer with instead, so tests can drive litellm's retries for real.
Everything it receives is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class OpenAIServer:
    def __init__(self, script: Callable[[str, int], str]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else None
                if fault is not None:
                    status, headers = fault
                    payload = json.dumps({"error": {"message": f"injected {status}", "type": "server_error"}})
                    self._send(status, payload, headers)
                    return
                prompt = body["messages"][-1]["content"]
                text = server.script(prompt, int(body.get("seed", 0)))
                reply = {"id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion",
                         "created": int(time.time()), "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                                   "total_tokens": len(prompt.split()) + len(text.split())}}
                self._send(200, json.dumps(reply), {})

            def _send(self, status: int, payload: str, headers: dict[str, str]) -> None:
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
