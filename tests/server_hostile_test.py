#!/usr/bin/env python3
"""hearth serve against hostile clients (docs SECURITY.md, "Server"), on the
real Gemma 3 270M.

usage: server_hostile_test.py [--quick] HEARTH_BINARY [MODEL]

One case each: max_tokens negative, zero, fractional, of the wrong type, and
huge; numbers JSON cannot hold as the field wants (1e999 temperature); deep
nesting; a 100 MB body, with a Content-Length and chunked (no length, so only
reading shows it is too big); headers and URLs over the limit; slow-loris
clients (a byte a second: others are still served, and the late request is
dropped with 408); a client that leaves while its body is still arriving, or
before a non-streamed answer; 1,000 connections at once; more connections from
one address than --max-conns-per-ip allows. After every case the process is
alive and a normal completion succeeds.

Server and client choices the cases rely on:
- max_tokens below 1, fractional, or not a number: 400, param "max_tokens"
  (OpenAI's answer). A huge one (10^12, 2^63) is taken as "until the context
  is full": generation stops there with finish_reason "length", which is what
  llama-server does and what clients that send a large round number expect.
- --timeout 3: a connection idle 3 s is closed, and a request must arrive in
  full within 3 s of its start. --quick (sanitizer build) sends fewer bytes,
  opens fewer connections where the count does not change the case, and
  gives each slot a context of 24 tokens instead of 64.
Exits 77 (skipped) without the model."""
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time

SKIP = 77
TIMEOUT = 3  # the server's --timeout
CTX = 64  # per slot: a huge max_tokens ends here (--quick: 24, each token costs ~10x there)
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
        self.proc = subprocess.Popen([binary, "serve", "-m", model, "--port", str(self.port), *args],
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hearth serve exited: " + "".join(self.log))
            try:
                if self.request("GET", "/health")[0] == 200:
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
        hdr = {"Content-Type": "application/json"} if data is not None else {}
        hdr.update(headers or {})
        conn.request(method, path, body=data, headers=hdr)
        r = conn.getresponse()
        out = (r.status, r.read(), dict(r.getheaders()))
        conn.close()
        return out

    def complete(self, fields, timeout=120):
        """POST /v1/completions with a short prompt and these fields: (status, parsed body or raw)."""
        body = {"prompt": "The capital of France is", "temperature": 0}
        body.update(fields)
        status, raw, _ = self.request("POST", "/v1/completions", body, timeout=timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def healthy(srv, after):
    """The process is alive and serves a normal completion."""
    if not check(srv.proc.poll() is None, f"alive after {after}", "".join(srv.log)[-2000:]):
        raise SystemExit(1)
    for attempt in range(3):  # a connection the server is closing may still be counted for a moment
        try:
            status, body = srv.complete({"max_tokens": 2}, timeout=60)
            if status == 200:
                break
        except OSError as e:
            status, body = None, repr(e)
        time.sleep(0.5)
    check(status == 200 and body["choices"][0]["text"] != "", f"a normal request succeeds after {after}",
          f"{status} {body!r}"[:300])


def is_error(status, body, code, param=None):
    return (status == code and isinstance(body, dict) and isinstance(body.get("error"), dict) and
            body["error"].get("message") and (param is None or body["error"].get("param") == param))


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes, reads until the server closes: (reply, seconds)."""
    t0 = time.time()
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                reply += d
        except OSError:
            pass
    return reply, time.time() - t0


def case_max_tokens(srv, quick):
    for value in (-1, 0, -2**63, 1.5, "16", True, [16], {}):
        status, body = srv.complete({"max_tokens": value})
        check(is_error(status, body, 400, "max_tokens"), f"max_tokens {value!r} -> 400 naming max_tokens",
              f"{status} {body!r}"[:300])
    status, body = srv.complete({"max_completion_tokens": -5, "max_tokens": 5})
    check(is_error(status, body, 400, "max_completion_tokens"), "max_completion_tokens -5 -> 400",
          f"{status} {body!r}"[:300])
    # Numbers past what a double holds: cJSON reads 1e999 as infinity.
    for field in ("max_tokens", "temperature", "top_p", "seed"):
        status, raw, _ = srv.request("POST", "/v1/completions",
                                     b'{"prompt":"Hi","%s":1e999%s}' %
                                     (field.encode(), b',"max_tokens":2' if field != "max_tokens" else b""))
        check(status == 400 and b"error" in raw, f"{field} 1e999 -> 400", f"{status} {raw[:200]!r}")
    # Huge: generation runs until the context is full, finish_reason "length"
    # (the last token comes from the logits of the last position: n_ctx + 1
    # in all).
    status, body = srv.complete({"max_tokens": 2**63, "ignore_eos": True}, timeout=600)
    ok = status == 200 and body["choices"][0]["finish_reason"] == "length"
    usage = body.get("usage", {}) if isinstance(body, dict) else {}
    check(ok and usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0) == CTX + 1,
          "max_tokens 2^63 -> stops at the context, finish_reason length", f"{status} {body!r}"[:400])
    # The same, streamed.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 10**15, "ignore_eos": True,
                                                        "stream": True}), {"Content-Type": "application/json"})
    r = conn.getresponse()
    events = [e for e in r.read().decode().split("\n\n") if e]
    conn.close()
    finishes = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]]
    check(r.status == 200 and events[-1] == "data: [DONE]" and finishes[-1] == "length" and
          all(f is None for f in finishes[:-1]), "streamed huge max_tokens -> length, then [DONE]", str(events[-2:]))
    healthy(srv, "bad max_tokens")


def case_json(srv):
    deep = b'{"prompt":"Hi","max_tokens":2,"x":' + b"[" * 100000 + b"]" * 100000 + b"}"
    status, raw, _ = srv.request("POST", "/v1/completions", deep)
    check(status == 400 and b"error" in raw, "JSON nested 100,000 deep -> 400", f"{status} {raw[:200]!r}")
    status, raw, _ = srv.request("POST", "/v1/chat/completions", b'{"messages":[{"role":"user","content":"\\ud800"}]}')
    check(status in (200, 400), "a lone surrogate in a JSON escape -> 200 or 400", f"{status} {raw[:200]!r}")
    status, raw, _ = srv.request("POST", "/v1/completions", b'{"prompt":"a\xff\xfe\xc0b","max_tokens":2}')
    check(status in (200, 400), "a prompt of invalid UTF-8 -> 200 or 400", f"{status} {raw[:200]!r}")
    status, raw, _ = srv.request("POST", "/v1/completions", b'{"prompt":"a\\u0000b","max_tokens":2}')
    check(status in (200, 400), "a NUL in the prompt -> 200 or 400", f"{status} {raw[:200]!r}")
    status, raw, _ = srv.request("POST", "/v1/completions", b'{"prompt":"Hi","top_k":-3,"max_tokens":2}')
    check(status == 400, "negative top_k -> 400", f"{status} {raw[:200]!r}")
    healthy(srv, "hostile JSON")


def send_big_body(srv, head, body_iter):
    """Sends a request head and then a body from body_iter (bytes pieces)
    while another thread reads the answer: (reply, bytes sent, seconds). The
    server may close the connection before the body is all sent."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    reply = []

    def reader():
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        reply.append(data)

    t0 = time.time()
    th = threading.Thread(target=reader)
    th.start()
    sent = 0
    try:
        s.sendall(head)
        for piece in body_iter:
            s.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the server closed its end: expected once it has answered
    th.join(60)
    s.close()
    return (reply[0] if reply else b""), sent, time.time() - t0


def case_big_bodies(srv, quick):
    total = (100 << 20) if not quick else (32 << 20)
    mb = b"x" * (1 << 20)
    # With a Content-Length: refused from the header, before the body.
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % total)
    reply, sent, secs = send_big_body(srv, head, (mb for _ in range(total >> 20)))
    check(reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply, f"{total >> 20} MB body with Content-Length -> 413",
          repr(reply[:120]))
    check(sent < total, "the server stops reading the body it refused", f"{sent} of {total} bytes taken in {secs:.1f} s")
    healthy(srv, "a body over the limit (Content-Length)")
    # Chunked, no Content-Length: only reading shows it is too big; the
    # server answers 413 once past the limit and reads no further.
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % len(mb) + mb + b"\r\n"
    reply, sent, secs = send_big_body(srv, head, (chunk for _ in range(total >> 20)))
    check(reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply, f"{total >> 20} MB chunked body -> 413",
          repr(reply[:120]))
    check(sent < 32 << 20, "the server stops reading the chunked body past the limit",
          f"{sent} of {total} bytes taken in {secs:.1f} s")
    healthy(srv, "a chunked body over the limit")
    # A chunked body under the limit is served.
    body = json.dumps({"prompt": "Hi", "max_tokens": 2}).encode()
    reply, _ = raw_exchange(srv.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                            b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n", timeout=60)
    check(reply.startswith(b"HTTP/1.1 200"), "a small chunked body is served", repr(reply[:120]))


def case_headers(srv):
    cases = [
        ("a 1 MB header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"),
        ("20,000 headers", b"GET /health HTTP/1.1\r\nHost: x\r\n" +
         b"".join(b"X-%d: y\r\n" % i for i in range(20000)) + b"\r\n"),
        ("a 1 MB URL", b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("a 1 MB header before a body", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Big: " +
         b"a" * (1 << 20) + b"\r\n\r\n{}"),
    ]
    for what, data in cases:
        reply, secs = raw_exchange(srv.port, data)
        status = reply[9:12]
        check(status in (b"431", b"414"), f"{what} -> 431 (414 for the URL), then the connection closes",
              f"{reply[:100]!r} after {secs:.1f} s")
    healthy(srv, "headers over the limit")


def case_slow_loris(srv, quick):
    # Clients that send a request one byte every 0.5 s: each keeps its
    # connection busy (never idle), but none holds it past the deadline, and
    # others are served meanwhile.
    n_slow = 20 if not quick else 8
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 40\r\n\r\n" + b" " * 40)
    head_end = request.index(b"\r\n\r\n") + 4
    results = [None] * n_slow

    def trickle(i, at_once):
        """Sends request[:at_once] at once, then the rest a byte every 0.5 s."""
        t0 = time.time()
        reply = b""
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        try:
            s.sendall(request[:at_once])
            for k in range(at_once, len(request)):
                time.sleep(0.5)
                s.sendall(request[k:k + 1])
                if time.time() - t0 > 4 * TIMEOUT:
                    break  # long past the deadline: the server failed to drop it
        except OSError:
            pass  # closed by the server
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                reply += d
        except OSError:
            pass
        s.close()
        results[i] = (reply, time.time() - t0)

    # Even ones send the request line and dribble the headers, odd ones send
    # whole headers and dribble the body.
    line_end = request.index(b"\r\n") + 2
    threads = [threading.Thread(target=trickle, args=(i, line_end if i % 2 == 0 else head_end)) for i in range(n_slow)]
    for t in threads:
        t.start()
    time.sleep(1)
    t0 = time.time()
    status, body = srv.complete({"max_tokens": 2}, timeout=30)
    check(status == 200, f"served while {n_slow} slow-loris clients trickle", f"{status} {body!r}"[:200])
    check(time.time() - t0 < TIMEOUT, "... without waiting for them", f"{time.time() - t0:.1f} s")
    for t in threads:
        t.join()
    for i, (reply, secs) in enumerate(results):
        what = "headers" if i % 2 == 0 else "body"
        check(reply.startswith(b"HTTP/1.1 408") and secs < TIMEOUT + 2.5,
              f"slow-loris ({what} a byte each 0.5 s) -> 408 and closed at the deadline",
              f"{reply[:60]!r} after {secs:.1f} s")
    # A client that sends half its headers and then nothing: closed when
    # idle (by MHD's idle timeout, or the deadline's 408, whichever is first).
    reply, secs = raw_exchange(srv.port, b"GET /health HTTP/1.1\r\nHo", timeout=4 * TIMEOUT)
    check(secs < TIMEOUT + 2.5 and (reply == b"" or reply.startswith(b"HTTP/1.1 408")),
          "a silent half request is closed at the timeout", f"{reply[:60]!r} after {secs:.1f} s")
    # A request line that never ends: no request has begun, so the connection
    # is closed without an answer, as an idle one is.
    results[0] = None
    trickle(0, 0)
    reply, secs = results[0]
    check(secs < TIMEOUT + 2.5 and reply == b"", "a request line dribbled a byte each 0.5 s -> closed at the deadline",
          f"{reply[:60]!r} after {secs:.1f} s")
    # A connection kept alive after an answer and then left idle is closed
    # without a word (a 408 there would read as the answer to the client's
    # next request).
    with socket.create_connection(("127.0.0.1", srv.port), timeout=4 * TIMEOUT) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        t0 = time.time()
        rest = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
        except OSError:
            pass
    check(first.startswith(b"HTTP/1.1 200") and rest == b"" and time.time() - t0 < TIMEOUT + 2.5,
          "an idle kept-alive connection is closed without a 408", f"{first[:20]!r} then {rest[:60]!r}")
    # Keep-alive: the deadline starts afresh for each request on a connection.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    ok = True
    for i in range(3):
        conn.request("GET", "/health")
        r = conn.getresponse()
        ok = ok and r.status == 200
        r.read()
        time.sleep(TIMEOUT * 0.6)
    conn.close()
    check(ok, "a keep-alive connection with pauses under the timeout serves request after request")
    healthy(srv, "slow-loris")


def cancelled_count(srv):
    status, raw, _ = srv.request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("hearth_requests_cancelled_total "):
            return int(float(line.split()[1]))
    return None


def case_disconnects(srv):
    # A body cut off half way.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"Hi")
    # A non-streamed request whose client leaves before the answer: noticed
    # while its tokens flow (counted as cancelled), not when the context is full.
    cancelled_before = cancelled_count(srv)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    body = json.dumps({"prompt": "Tell a long story.", "max_tokens": 100000, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.2)
    s.close()
    # The slot comes free: a request that needs both slots' worth of time still runs.
    freed = False
    for _ in range(50):
        time.sleep(0.1)
        status, raw, _ = srv.request("GET", "/metrics")
        if status == 200 and b"\nhearth_slots_busy 0\n" in raw:
            freed = True
            break
    check(freed, "a client that leaves before its non-streamed answer frees its slot")
    check(cancelled_count(srv) == cancelled_before + 1, "its generation was cancelled, not run to the end",
          f"{cancelled_before} -> {cancelled_count(srv)}")
    healthy(srv, "clients that leave early")


def case_many_connections(srv, quick):
    n = 1000 if not quick else 400
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
        except (ValueError, OSError):
            pass
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if not check(limit >= want or limit == resource.RLIM_INFINITY, f"the fd limit allows {n} sockets",
                 f"{limit} (hard {hard})"):
        return
    socks = []
    t0 = time.time()
    for _ in range(n):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", srv.port))
        except OSError:
            pass
        socks.append(s)
    # Each asks for /health: those past the connection limit are closed, the
    # others answered; none hangs, and the server lives.
    answered = closed = 0
    for s in socks:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
    for s in socks:
        try:
            d = s.recv(4096)
            if d.startswith(b"HTTP/1.1 200"):
                answered += 1
            else:
                closed += 1
        except OSError:
            closed += 1
    for s in socks:
        s.close()
    secs = time.time() - t0
    check(answered > 0 and answered + closed == n and secs < 60,
          f"{n} connections at once: some answered, the rest closed, none hangs",
          f"{answered} answered, {closed} closed in {secs:.1f} s")
    print(f"{n} connections: {answered} answered, {closed} refused, {secs:.1f} s", file=sys.stderr)
    healthy(srv, f"{n} connections at once")
    # A flood of refusals is one line and a count, not a line each.
    refusals = [line for line in srv.log if "connection limit" in line and "more times" not in line]
    check(len(refusals) <= 3, "refused connections do not flood the log", f"{len(refusals)} lines")


def case_per_ip_limit(binary, model):
    """--max-conns-per-ip 3: a fourth and fifth connection from the same
    address are closed at once, the first three stay open and are served."""
    srv = Server(binary, model, "--parallel", "1", "-c", str(CTX), "--max-conns-per-ip", "3")
    try:
        socks = []
        for _ in range(5):
            s = socket.socket()
            s.settimeout(3)
            s.connect(("127.0.0.1", srv.port))
            socks.append(s)
            time.sleep(0.1)  # in order, so the first three are the ones kept
        refused = 0
        for s in socks[3:]:
            try:
                refused += s.recv(1) == b""
            except ConnectionResetError:
                refused += 1
            except socket.timeout:
                pass
        served = 0
        for s in socks[:3]:
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                served += s.recv(4096).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
        for s in socks:
            s.close()
        check(refused == 2 and served == 3, "--max-conns-per-ip 3: connections past 3 closed, the 3 served",
              f"{refused} of 2 refused, {served} of 3 served")
        healthy(srv, "the per-address limit")
    finally:
        rc = srv.stop()
        check(rc == 0, "the per-address server stops cleanly", f"exit {rc}")


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary = args[0]
    model = args[1] if len(args) > 1 else default_model()
    if not os.path.exists(model):
        print(f"SKIP: {model} is missing (scripts/setup.sh fetches it)", file=sys.stderr)
        return SKIP
    global CTX
    if quick:
        CTX = 24
    srv = Server(binary, model, "--parallel", "2", "--queue", "2", "-c", str(CTX), "--timeout", str(TIMEOUT))
    t_start = time.time()
    try:
        for name, run in [("max_tokens", lambda: case_max_tokens(srv, quick)), ("json", lambda: case_json(srv)),
                          ("big bodies", lambda: case_big_bodies(srv, quick)), ("headers", lambda: case_headers(srv)),
                          ("slow-loris", lambda: case_slow_loris(srv, quick)),
                          ("disconnects", lambda: case_disconnects(srv)),
                          ("many connections", lambda: case_many_connections(srv, quick))]:
            t0 = time.time()
            run()
            print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr)
    finally:
        rc = srv.stop()
        check(rc == 0, "the server stops cleanly on SIGTERM", f"exit {rc}; log: {''.join(srv.log)[-2000:]}")
    t0 = time.time()
    case_per_ip_limit(binary, model)
    print(f"per-address limit: {time.time() - t0:.1f} s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed in {time.time() - t_start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
