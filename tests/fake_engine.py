"""A small OpenAI-compatible completions server on loopback that can misbehave on purpose.

It answers ``/v1/models`` and ``/v1/completions`` deterministically (with ``echo``, every
word of the prompt scores -1): choice ``j`` of a request
with seed ``s`` is ``max_tokens`` words ``" w<k>"``, ``k`` a function of ``(s, j, t)``, ending
with ``finish_reason: length``. ``faults`` is a queue: each completion request first takes the
next fault, if any: ``("status", code, retry_after)``, ``("slow", seconds)``, ``("drop",)``
(headers promise a body that is cut off), ``("truncated",)`` (200 with half a JSON document),
``("answer", f)`` (200 with ``f(answer)``: choices out of order, missing, too few).
Each sampled word has log-probability -0.5; with ``logprobs: 1`` each word's top-1 log-probability is -0.1, or -2.3 (probability 0.1)
when its number is a multiple of 5. Every request body is recorded. With ``tokenize``, it
also has vLLM's ``/tokenize`` (each word of a prompt is the id 1000 + its position) and takes
token-id prompts, answering ``return_tokens_as_token_ids`` with ``token_id:<k>`` for word
``w<k>``; without it, ``/tokenize`` is not found (404), as on engines that lack it. It exists to test what a real engine cannot be made to do on
demand (fail); the real engine's tests run against vLLM.

``flavour`` answers as another engine's documentation and source say it does (SGLang and
llama.cpp do not install on this machine, so these are modelled on what they document, not
recorded from a live server):

- ``"sglang"`` (sgl-project/sglang ``srt/entrypoints/openai/serving_completions.py``,
  ``serving_tokenize.py``): ``/tokenize`` takes ``prompt`` and answers ``tokens``, ``count``
  and ``max_model_len``; token-id prompts are taken; ``return_tokens_as_token_ids`` is not an
  option (tokens stay text; ``return_token_ids`` is its own, other field);
- ``"llama.cpp"`` (ggml-org/llama.cpp ``tools/server/README.md``, ``server-common.cpp``,
  ``utils.hpp``): ``/tokenize`` reads ``content`` (a body without it tokenizes the empty text:
  no tokens); ``n`` > 1 is refused ("Only one completion choice is allowed", older builds);
  ``echo`` is refused ("Only no echo is supported"); ``logprobs`` come as
  ``{"content": [{"id", "token", "bytes", "logprob", "top_logprobs"}]}``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeEngine:
    def __init__(self, model: str = "fake", *, logprobs: bool = True,
                 tokenize: bool = False, flavour: str = "vllm") -> None:
        self.model = model
        self.flavour = flavour
        self.tokenize = tokenize or flavour != "vllm"
        self.tokenized: list[str] = []
        self.logprobs = logprobs  # False: a server that reports no log-probabilities
        self.faults: list[tuple] = []
        self.tokenize_faults: list[int] = []  # HTTP statuses /tokenize answers next
        self.api_key: str | None = None  # when set, GET /v1/models wants it as a bearer token
        self.bodies: list[dict] = []
        self.gets: list[str] = []  # the paths of GET requests, in order
        self.headers: list[dict] = []  # each completion request's headers, lower-cased names
        self.lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: ANN002
                pass

            def _send(self, code: int, payload: bytes, headers: dict | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802
                engine.gets.append(self.path)
                key = engine.api_key
                if key is not None and self.headers.get("authorization") != f"Bearer {key}":
                    self._send(401, b'{"error": {"message": "bad key"}}')
                elif self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"data": [{"id": engine.model}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/tokenize" and engine.tokenize_faults:
                    with engine.lock:
                        status = engine.tokenize_faults.pop(0)
                    return self._send(status, b'{"error": {"message": "no worker"}}')
                if self.path == "/tokenize" and engine.tokenize:
                    text = body.get("content", "") if engine.flavour == "llama.cpp" else \
                        body["prompt"]
                    with engine.lock:
                        engine.tokenized.append(text)
                    ids = [1000 + i for i in range(len(text.split()))]
                    answer = ({"tokens": ids} if engine.flavour == "llama.cpp" else
                              {"tokens": ids, "count": len(ids), "max_model_len": 256})
                    return self._send(200, json.dumps(answer).encode())
                if self.path != "/v1/completions":
                    return self._send(404, b'{"detail": "Not Found"}')
                with engine.lock:
                    engine.bodies.append(body)
                    engine.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fault = engine.faults.pop(0) if engine.faults else None
                if body.get("model") != engine.model:
                    msg = {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
                    return self._send(404, json.dumps(msg).encode())
                if fault and fault[0] == "status":
                    headers = {"retry-after": str(fault[2])} if fault[2] is not None else {}
                    return self._send(fault[1], b'{"error": {"message": "busy"}}', headers)
                if fault and fault[0] == "slow":
                    time.sleep(fault[1])
                refused = engine.refuses(body)
                if refused:
                    msg = {"error": {"code": 400, "message": refused,
                                     "type": "invalid_request_error"}}
                    return self._send(400, json.dumps(msg).encode())
                answer = engine.answer(body)
                if fault and fault[0] == "answer":
                    answer = fault[1](answer)
                payload = json.dumps(answer).encode()
                if fault and fault[0] == "drop":
                    self._send(200, payload[: len(payload) // 3], length=len(payload))
                    self.close_connection = True
                    return
                if fault and fault[0] == "truncated":
                    return self._send(200, payload[: len(payload) // 2])
                self._send(200, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def refuses(self, body: dict) -> str | None:
        """What llama.cpp's server refuses in a completions body (None: nothing)."""
        if self.flavour != "llama.cpp":
            return None
        if body.get("n", 1) > 1:
            return "Only one completion choice is allowed"
        if body.get("echo"):
            return "Only no echo is supported"
        return None

    def answer(self, body: dict) -> dict:
        prompt = body["prompt"]
        if body.get("echo") and isinstance(prompt, list) and prompt and \
                isinstance(prompt[0], list):  # token-id prompts, scored: each token -1
            return {"choices": [{"index": i, "text": "", "finish_reason": "length",
                                 "logprobs": {"token_logprobs": [None] + [-1.0] * (len(p) - 1)}}
                                for i, p in enumerate(prompt)], "usage": {}}
        if body.get("echo"):  # scoring: every word of the prompt has log-probability -1
            words = body["prompt"].split(" ")
            tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
            offsets = [sum(map(len, tokens[:i])) for i in range(len(tokens))]
            lp = {"tokens": tokens, "token_logprobs": [None] + [-1.0] * (len(tokens) - 1),
                  "text_offset": offsets}
            return {"choices": [{"index": 0, "text": body["prompt"],
                                 "logprobs": lp if self.logprobs else None,
                                 "finish_reason": "length"}], "usage": {}}
        choices = []
        for j in range(body.get("n", 1)):
            words = [f" w{(body['seed'] * 31 + j * 7 + t) % 97}" for t in range(body["max_tokens"])]
            text, reason = "".join(words), "length"
            for s in body.get("stop") or []:
                if s in text:
                    text, reason = text[: text.index(s)], "stop"
            kept = words[: len(text.split())]
            # the model is sure of a word unless its number is a multiple of 5 (top-1 0.1)
            tops = [{w: (-2.3 if int(w[2:]) % 5 == 0 else -0.1)} for w in kept]
            as_ids = body.get("return_tokens_as_token_ids") and self.flavour == "vllm"
            lp = {"tokens": [f"token_id:{w[2:]}" for w in kept] if as_ids else kept,
                  "token_logprobs": [-0.5] * len(kept)}
            if body.get("logprobs") == 1:
                lp["top_logprobs"] = tops
            if self.flavour == "llama.cpp":
                lp = {"content": [
                    {"id": int(w[2:]), "token": w, "bytes": list(w.encode()), "logprob": -0.5,
                     "top_logprobs": [{"id": int(w[2:]), "token": w, "bytes": list(w.encode()),
                                       "logprob": top[w]}] if body.get("logprobs") else []}
                    for w, top in zip(kept, tops)]}
            choices.append({"index": j, "text": text, "finish_reason": reason,
                            **({"logprobs": lp} if self.logprobs else {})})
        used = sum(len(c["text"].split()) for c in choices)
        return {"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": used}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
