#!/usr/bin/env python3
"""hearth serve, driven by the official `openai` Python client (and raw HTTP
where a client would not send such a request), against the real Gemma 3 270M.

usage: server_test.py [--quick] HEARTH_BINARY [MODEL]

Checks the answers' shapes (the client parses them into its own types), greedy
text against `hearth run` on the same prompt, streaming against non-streaming,
stop strings, logprobs, usage, errors and their statuses, the API key, a client
that leaves mid-stream, parallel requests against the same requests one at a
time, and the queue's 503. --quick (the sanitizer build, where each token
costs ~10x) leaves out the comparisons that generate the most: against
`hearth run`, the same seed twice, and parallel against alone. Exits 77
(skipped) without the openai package or the model."""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

SKIP = 77
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}" + (f": {detail}" if detail else ""), file=sys.stderr)
    return cond


def default_model():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "hearth", "models", "gemma-3-270m-q4_k_m.gguf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, model, *args):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([binary, "serve", "-m", model, "--port", str(self.port), *args],
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hearth serve exited: " + "".join(self.log))
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("hearth serve did not come up in 120 s")

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        out = (r.status, r.read(), dict(r.getheaders()))
        conn.close()
        return out

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def metric(server, key, name):
    status, body, _ = server.get("/metrics", {"Authorization": f"Bearer {key}"})
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary = args[0]
    model = args[1] if len(args) > 1 else default_model()
    try:
        import openai
    except ImportError:
        print("SKIP: the openai package is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return SKIP
    if not os.path.exists(model):
        print(f"SKIP: {model} is missing (scripts/setup.sh fetches it)", file=sys.stderr)
        return SKIP

    key = "test-key-123"
    srv = Server(binary, model, "--parallel", "2", "--queue", "2", "-c", "1024", "--api-key", key)
    try:
        run_tests(openai, binary, model, srv, key, quick)
    finally:
        rc = srv.stop()
        check(rc == 0, "the server stops cleanly on SIGTERM", f"exit {rc}; log: {''.join(srv.log)[-2000:]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def run_tests(openai, binary, model, srv, key, quick):
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key=key, max_retries=0, timeout=120)
    model_id = os.path.basename(model)[:-len(".gguf")]
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three colours."}]

    # /v1/models
    models = client.models.list().data
    check(len(models) == 1 and models[0].id == model_id, "models lists the one model", str(models))

    # Non-streamed, greedy.
    r = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=24)
    text = r.choices[0].message.content
    check(r.object == "chat.completion" and r.choices[0].message.role == "assistant", "chat completion shape")
    check(isinstance(text, str) and len(text) > 0, "greedy chat gives text", repr(text))
    check(r.choices[0].finish_reason in ("stop", "length"), "finish_reason", r.choices[0].finish_reason)
    u = r.usage
    check(u.prompt_tokens > 5 and 0 < u.completion_tokens <= 24 and u.total_tokens == u.prompt_tokens + u.completion_tokens,
          "usage counts", str(u))
    if r.choices[0].finish_reason == "length":
        check(u.completion_tokens == 24, "length finish after max_tokens", str(u))

    # The same prompt through `hearth run` (one sequence, no server): the same
    # greedy text, checked on /v1/completions.
    if not quick:
        compare_with_run(binary, model, srv, key)

    stream_and_stops(client, model_id, messages, r, text, u)
    if not quick:
        a = client.chat.completions.create(model=model_id, messages=messages, temperature=1.0, seed=7, max_tokens=16)
        b = client.chat.completions.create(model=model_id, messages=messages, temperature=1.0, seed=7, max_tokens=16)
        check(a.choices[0].message.content == b.choices[0].message.content, "same seed, same text")
    logprobs_and_completions(client, model_id, messages, srv)
    tokenize_and_errors(openai, client, model_id, messages, srv, key)
    if not quick:
        parallel_equals_alone(client, model_id)
    disconnect_queue_metrics(srv, key)


def compare_with_run(binary, model, srv, key):
    status, body, _ = srv.request("POST", "/v1/completions",
                                  {"prompt": "The capital of France is", "max_tokens": 16, "temperature": 0},
                                  {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    check(status == 200, "raw completion status", body[:300])
    served = json.loads(body)["choices"][0]["text"] if status == 200 else None
    ran = subprocess.run([binary, "run", "-m", model, "-p", "The capital of France is", "-n", "16", "--temp", "0"],
                         capture_output=True, text=True, timeout=300).stdout
    check(served is not None and len(served) > 0 and ran.startswith("The capital of France is" + served),
          "greedy /v1/completions equals hearth run", f"served {served!r}, run {ran!r}")


def stream_and_stops(client, model_id, messages, r, text, u):
    # Streamed: the same text, in several chunks, OpenAI's chunk sequence.
    chunks = list(client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=24,
                                                 stream=True, stream_options={"include_usage": True}))
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    check("".join(content) == text, "stream text equals the non-streamed text", f"{''.join(content)!r} vs {text!r}")
    check(len(content) > 2, "stream arrives in several chunks", str(len(content)))
    check(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == [r.choices[0].finish_reason], "one finish_reason, at the end", str(finishes))
    check(chunks[-1].usage is not None and chunks[-1].choices == [] and chunks[-1].usage.completion_tokens ==
          u.completion_tokens, "the usage chunk ends the stream", str(chunks[-1]))
    check(all(c.id == chunks[0].id for c in chunks), "one id across the chunks")

    # Stop strings: stop at a word of the greedy text; the text ends before it.
    long = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=40)
    full = long.choices[0].message.content
    words = [w for w in full.split() if len(w) > 3]
    if check(len(words) >= 2, "enough text to pick a stop string from", repr(full)):
        stop = words[1]
        cut = full[:full.index(stop)]
        s1 = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=40, stop=[stop])
        check(s1.choices[0].message.content == cut and s1.choices[0].finish_reason == "stop", "stop string, not streamed",
              f"{s1.choices[0].message.content!r} vs {cut!r}")
        s2 = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=40, stop=stop,
                                            stream=True)
        parts = [c.choices[0].delta.content or "" for c in s2 if c.choices]
        check("".join(parts) == cut, "stop string, streamed", f"{''.join(parts)!r} vs {cut!r}")



def logprobs_and_completions(client, model_id, messages, srv):
    # Logprobs: greedy picks the top alternative.
    lp = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=8,
                                        logprobs=True, top_logprobs=3)
    entries = lp.choices[0].logprobs.content if lp.choices[0].logprobs else []
    check(len(entries) == lp.usage.completion_tokens + (lp.choices[0].finish_reason == "stop"),
          "one logprobs entry per sampled token", f"{len(entries)} vs {lp.usage.completion_tokens}")
    ok = all(len(e.top_logprobs) == 3 and e.logprob <= 0 and
             e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob and
             abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4 for e in entries)
    check(ok and entries, "top_logprobs sorted, greedy token on top", str(entries[:2]))

    # /v1/completions through the client, streamed and not.
    c1 = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=12, temperature=0)
    c2 = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True)
    check(c1.object == "text_completion" and len(c1.choices[0].text) > 0, "completion shape")
    check("".join(c.choices[0].text for c in c2 if c.choices) == c1.choices[0].text, "completion stream equals")

    # logit_bias: +100 makes a token the greedy choice; false (or -100) bans greedy's own choice.
    def first_token(bias):
        return client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=1, temperature=0,
                                         extra_body={"logit_bias": bias}).choices[0].text
    hdr = {"Authorization": f"Bearer {client.api_key}"}
    tokenize = lambda text: json.loads(srv.request("POST", "/tokenize", {"content": text}, hdr)[1])["tokens"]
    detokenize = lambda ids: json.loads(srv.request("POST", "/detokenize", {"tokens": ids}, hdr)[1])["content"]
    zebra = tokenize(" zebra")[0]
    forced = first_token({str(zebra): 100})
    check(forced == detokenize([zebra]), "logit_bias +100 forces its token", f"{forced!r} vs {detokenize([zebra])!r}")
    greedy = first_token({})
    ids = tokenize(greedy)
    if check(len(ids) == 1, "greedy's first piece is one token", str(ids)):
        banned = first_token({str(ids[0]): False})
        check(banned != greedy and banned != "", "logit_bias false bans greedy's token", f"{banned!r}")
        check(first_token([[ids[0], -100]]) == banned, "llama.cpp's [[id, bias]] form, -100 as good as a ban")



def tokenize_and_errors(openai, client, model_id, messages, srv, key):
    # tokenize / detokenize
    hdr = {"Authorization": f"Bearer {key}"}
    status, body, _ = srv.request("POST", "/tokenize", {"content": "Hello world"}, hdr)
    tokens = json.loads(body).get("tokens") if status == 200 else None
    check(status == 200 and tokens and all(isinstance(t, int) for t in tokens), "tokenize", body[:200])
    status, body, _ = srv.request("POST", "/detokenize", {"tokens": tokens or []}, hdr)
    check(status == 200 and json.loads(body).get("content") == "Hello world", "detokenize round trip", body[:200])

    # Errors: statuses and OpenAI's error shape; the server stays up.
    def expect_error(exc_type, what, **kw):
        try:
            client.chat.completions.create(**kw)
            check(False, what, "no error")
        except exc_type as e:
            check(isinstance(e.body, dict) and "message" in e.body, what + " (error body)", str(e.body))
        except Exception as e:  # noqa: BLE001 - report the wrong kind
            check(False, what, f"{type(e).__name__}: {e}")

    expect_error(openai.NotFoundError, "unknown model -> 404", model="no-such-model", messages=messages)
    expect_error(openai.BadRequestError, "temperature of the wrong type -> 400", model=model_id, messages=messages,
                 temperature="hot")
    expect_error(openai.BadRequestError, "empty messages -> 400", model=model_id, messages=[])
    expect_error(openai.BadRequestError, "n = 2 -> 400", model=model_id, messages=messages, n=2)
    long_prompt = "word " * 3000
    for i in range(3):  # three times in a row: still up
        expect_error(openai.BadRequestError, f"prompt over the context -> 400 ({i + 1})", model=model_id,
                     messages=[{"role": "user", "content": long_prompt}])
    nokey = openai.OpenAI(base_url=srv.base + "/v1", api_key="wrong", max_retries=0)
    try:
        nokey.models.list()
        check(False, "wrong API key -> 401", "no error")
    except openai.AuthenticationError:
        check(True, "wrong API key -> 401")
    status, body, _ = srv.request("POST", "/v1/chat/completions", b"{not json", hdr)
    check(status == 400 and "error" in json.loads(body), "malformed JSON -> 400", body[:200])
    # A body over the limit is refused from its Content-Length, before it is
    # sent (a client that sends it all anyway sees the connection close).
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 65536)
        reply = sock.recv(65536)
    check(reply.startswith(b"HTTP/1.1 413"), "body over the limit -> 413", repr(reply[:100]))
    status, _, _ = srv.get("/no/such/path", hdr)
    check(status == 404, "unknown path -> 404", str(status))
    status, body, _ = srv.get("/health")
    check(status == 200, "healthy after the errors")



def parallel_equals_alone(client, model_id):
    # Parallel: four greedy requests at once over two slots give what each
    # gives alone (the batch mixes their tokens; each row is its own).
    prompts = ["Name a fruit.", "Count to five.", "Say hello in French.", "What is 2+2?"]
    alone = [client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": p}],
                                            temperature=0, max_tokens=20).choices[0].message.content for p in prompts]
    together = [None] * len(prompts)

    def one(i):
        s = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": prompts[i]}],
                                           temperature=0, max_tokens=20, stream=True)
        together[i] = "".join(c.choices[0].delta.content or "" for c in s if c.choices)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(together == alone, "parallel greedy streams equal the same requests alone", f"{together} vs {alone}")



def disconnect_queue_metrics(srv, key):
    hdr = {"Authorization": f"Bearer {key}"}
    # A client that leaves mid-stream frees its slot at once.
    cancelled_before = metric(srv, key, "hearth_requests_cancelled_total") or 0
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("POST", "/v1/chat/completions",
                 json.dumps({"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 800,
                             "stream": True, "temperature": 0.8}),
                 {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    got = resp.read1(4096)  # the first chunk of the stream (read1 undoes the chunked framing)
    check(got.startswith(b"data: "), "stream started", repr(got))
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    freed = False
    for _ in range(50):
        time.sleep(0.1)
        if metric(srv, key, "hearth_slots_busy") == 0:
            freed = True
            break
    check(freed, "the slot is freed within 5 s of the client leaving")
    check((metric(srv, key, "hearth_requests_cancelled_total") or 0) >= cancelled_before + 1,
          "the request counts as cancelled")

    # Past the slots and the queue: 503 with Retry-After, and the rest finish.
    results = []

    def long_request():
        status, body, headers = srv.request("POST", "/v1/chat/completions",
                                            {"messages": [{"role": "user", "content": "Write a poem."}],
                                             "max_tokens": 40, "temperature": 0.8, "ignore_eos": True},
                                            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                                            timeout=600)
        results.append((status, headers.get("Retry-After")))

    threads = [threading.Thread(target=long_request) for _ in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in results)
    check(statuses.count(200) >= 4 and statuses.count(503) >= 1, "2 slots + 2 queued: the rest get 503", str(statuses))
    check(all(ra for s, ra in results if s == 503), "503 says Retry-After")

    # Metrics: Prometheus text with the counters moving.
    status, body, _ = srv.get("/metrics", hdr)
    text = body.decode()
    check(status == 200 and "# TYPE hearth_generated_tokens_total counter" in text, "metrics text")
    check((metric(srv, key, "hearth_generated_tokens_total") or 0) > 100, "generated tokens counted")
    check((metric(srv, key, "hearth_requests_rejected_total") or 0) >= 1, "rejections counted")
    check((metric(srv, key, "hearth_decode_tokens_per_second") or 0) > 0, "decode speed reported")
    check((metric(srv, key, "hearth_prompt_tokens_cached_total") or 0) > 0, "slots reuse a shared prompt prefix")

    # The chat page.
    status, body, headers = srv.get("/")
    check(status == 200 and b"<html" in body.lower() and headers.get("Content-Type", "").startswith("text/html"),
          "GET / serves the chat page")


if __name__ == "__main__":
    sys.exit(main())
