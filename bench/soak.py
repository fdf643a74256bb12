#!/usr/bin/env python3
"""Soak: many concurrent streaming clients against hearth serve for a while,
a third of them leaving at random points, and what the server looks like
afterwards. Not a test (it takes minutes and measures); a run is judged by:

  - zero crashes: the server is alive at the end and exits 0 on SIGTERM;
  - every completed response well-formed: only "data: " events (and ":"
    comments), each JSON with one id, the role first, exactly one
    finish_reason in the last choice chunk, then the usage chunk, then
    [DONE] and nothing after;
  - RSS after the run within 5 % of RSS before it, both measured idle. The
    "before" follows a settling round of --settle seconds of the same load
    (leavers included), so that what only fills once is in: malloc's
    per-thread arenas, glibc's cache of thread stacks. The figure judged is
    RssAnon, the process's own memory (heap, stacks, KV cache, repacked
    weights): VmRSS also counts the pages of the mmap'd model file read so
    far, and those grow with every token id whose embedding row is read for
    the first time, up to the file's size; they are the page cache, not a
    leak. All three (and cold RSS, before any request) are printed.
  - the slots and the queue empty at the end (no request left behind).

usage: soak.py [--hearth build/hearth] [--model M] [--clients 64] [--seconds 60]
               [--settle 15] [--parallel 8] [--threads 0] [--seed 1]

The server gets a --queue of twice the clients, so that no one is turned away
(a client that left may still hold its place for a moment while it sends the
next request; a 503 would be counted and retried after Retry-After). Exits 1
when a criterion fails."""
import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

PROMPTS = ["Tell me about the sea.", "Describe a forest at night.", "Explain how rain forms.",
           "Write about a city in winter.", "What do cats like?", "Describe a mountain climb.",
           "Tell a story about a robot.", "Explain why the sky is blue.", "Describe a busy market.",
           "Write about an old library.", "What makes bread rise?", "Describe a thunderstorm."]


def default_model():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "hearth", "models", "gemma-3-270m-q4_k_m.gguf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    """VmRSS, RssAnon and RssFile of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("hearth_") and "{" not in line:
            name, value = line.split()
            out[name[len("hearth_"):]] = float(value)
    return out


def check_stream(raw, max_tokens):
    """The SSE body of a completed streamed chat completion: None when
    well-formed, else what is wrong; and the completion tokens."""
    text = raw.decode("utf-8")  # strict: the stream must be UTF-8
    if not text.endswith("\n\n"):
        return "does not end with a blank line", 0
    events = text[:-2].split("\n\n")
    events = [e for e in events if not e.startswith(":")]  # keep-alive comments
    if not events or events[-1] != "data: [DONE]":
        return f"does not end with [DONE]: {events[-1:]!r}", 0
    chunks = []
    for e in events[:-1]:
        if not e.startswith("data: ") or "\n" in e:
            return f"not a data event: {e[:80]!r}", 0
        chunks.append(json.loads(e[6:]))
    if len(chunks) < 2:
        return "fewer than two chunks", 0
    if len({c["id"] for c in chunks}) != 1:
        return "more than one id", 0
    usage = chunks[-1]
    if usage.get("choices") != [] or not isinstance(usage.get("usage"), dict):
        return "the chunk before [DONE] is not the usage chunk", 0
    choice_chunks = chunks[:-1]
    if any(c["object"] != "chat.completion.chunk" or len(c["choices"]) != 1 for c in choice_chunks):
        return "a chunk without exactly one choice", 0
    if choice_chunks[0]["choices"][0]["delta"].get("role") != "assistant":
        return "the first chunk has no role", 0
    finishes = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    if finishes[-1] not in ("stop", "length") or any(f is not None for f in finishes[:-1]):
        return f"finish_reasons {finishes[-3:]}", 0
    n = usage["usage"]["completion_tokens"]
    if not 0 <= n <= max_tokens or (finishes[-1] == "length" and n != max_tokens):
        return f"completion_tokens {n} for max_tokens {max_tokens}, finish {finishes[-1]}", 0
    return None, n


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.completed = self.disconnected = self.malformed = self.rejected = self.errors = 0
        self.tokens = 0
        self.problems = []
        self.leave_points = {}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if k == "problem":
                    self.problems.append(v)
                elif k == "leave":
                    self.leave_points[v] = self.leave_points.get(v, 0) + 1
                else:
                    setattr(self, k, getattr(self, k) + v)


def one_request(port, rng, leaver, stats, max_tokens):
    """One streamed chat completion of up to max_tokens (at least 8); a
    leaver drops the connection at a random point: right after sending,
    after the headers, or after some chunks."""
    max_tokens = rng.randint(8, max(8, max_tokens))
    body = json.dumps({"messages": [{"role": "user", "content": rng.choice(PROMPTS)}], "max_tokens": max_tokens,
                       "temperature": 0.8, "stream": True, "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    leave = None
    if leaver:
        leave = rng.choice(["after sending", "after the headers", "mid-stream", "mid-stream", "mid-stream"])
    try:
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        if leave == "after sending":
            time.sleep(rng.random() * 0.5)
            c.sock.shutdown(socket.SHUT_RDWR)
            stats.add(disconnected=1, leave=leave)
            return
        r = c.getresponse()
        if r.status == 503:
            r.read()
            stats.add(rejected=1)
            time.sleep(float(r.getheader("Retry-After") or 1))
            return
        if r.status != 200:
            stats.add(errors=1, problem=f"status {r.status}: {r.read()[:200]!r}")
            return
        if leave == "after the headers":
            c.sock.shutdown(socket.SHUT_RDWR)
            stats.add(disconnected=1, leave=leave)
            return
        if leave == "mid-stream":
            want = rng.randint(1, 8 * 1024)
            got = 0
            while got < want:
                d = r.read1(want - got)
                if not d:
                    break
                got += len(d)
            c.sock.shutdown(socket.SHUT_RDWR)
            stats.add(disconnected=1, leave=leave)
            return
        raw = r.read()
        problem, n = check_stream(raw, max_tokens)
        if problem:
            stats.add(malformed=1, problem=problem)
        else:
            stats.add(completed=1, tokens=n)
    except (OSError, http.client.HTTPException, ValueError) as e:
        stats.add(errors=1, problem=f"{type(e).__name__}: {e}")
    finally:
        c.close()


def client(port, index, until, seed, stats, leaver, max_tokens):
    rng = random.Random(seed * 1000 + index)
    one_request(port, rng, leaver, stats, max_tokens)
    while time.time() < until:
        one_request(port, rng, leaver, stats, max_tokens)


def run_round(port, n_clients, seconds, seed, stats, leavers=True, max_tokens=64):
    """Each client sends requests one after another until `seconds` have
    passed (at least one each)."""
    until = time.time() + seconds
    threads = [threading.Thread(target=client, args=(port, i, until, seed, stats, leavers and i % 3 == 0,
                                                      max_tokens))
               for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def wait_idle(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = metrics(port)
        if m.get("slots_busy") == 0 and m.get("queue_depth") == 0:
            return m
        time.sleep(0.5)
    return metrics(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hearth", default="build/hearth")
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--settle", type=float, default=15, help="seconds of the same load before 'before'")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="server threads (0: its default)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    port = free_port()
    cmd = [a.hearth, "serve", "-m", a.model, "--port", str(port), "--parallel", str(a.parallel),
           "--queue", str(2 * a.clients), "-c", "512"]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    log = open(os.environ.get("SOAK_LOG", "/dev/null"), "w")
    proc = subprocess.Popen(cmd, stderr=log)
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None or time.time() > deadline:
            print("the server did not come up", file=sys.stderr)
            return 1
        try:
            metrics(port)
            break
        except OSError:
            time.sleep(0.3)
    cold = rss_kib(proc.pid)

    # Settling: the same load for a while, before "before" is measured.
    warm = Stats()
    run_round(port, a.clients, a.settle, a.seed + 1, warm)
    wait_idle(port)
    time.sleep(1)
    before = rss_kib(proc.pid)
    m0 = metrics(port)

    stats = Stats()
    t0 = time.time()
    run_round(port, a.clients, a.seconds, a.seed, stats)
    wall = time.time() - t0
    m1 = wait_idle(port)
    time.sleep(1)
    alive = proc.poll() is None
    after = rss_kib(proc.pid) if alive else {}
    proc.terminate()
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None

    generated = m1.get("generated_tokens_total", 0) - m0.get("generated_tokens_total", 0)
    def grew(key):
        return (after.get(key, 0) - before[key]) / before[key] * 100 if after else float("nan")
    growth = grew("RssAnon")
    print(f"soak: {a.clients} clients ({(a.clients + 2) // 3} leaving at random points), {a.seconds:.0f} s of "
          f"requests ({wall:.0f} s until the last one ended), "
          f"{a.parallel} slots, model {os.path.basename(a.model)}")
    print(f"  requests completed {stats.completed}, disconnected {stats.disconnected} "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(stats.leave_points.items()))}), "
          f"malformed {stats.malformed}, rejected (503) {stats.rejected}, errors {stats.errors}")
    print(f"  tokens: {stats.tokens} in completed responses ({stats.tokens / wall:.1f}/s), "
          f"{generated:.0f} generated in all ({generated / wall:.1f}/s); "
          f"server: {m1.get('requests_finished_total', 0) - m0.get('requests_finished_total', 0):.0f} finished, "
          f"{m1.get('requests_cancelled_total', 0) - m0.get('requests_cancelled_total', 0):.0f} cancelled")
    print(f"  RSS KiB: cold {cold['VmRSS']} (anon {cold['RssAnon']}); settling round: {warm.completed} completed, "
          f"{warm.disconnected} left, malformed {warm.malformed}, errors {warm.errors}")
    print(f"  RSS KiB before: {before['VmRSS']} (anon {before['RssAnon']}, file {before['RssFile']})")
    print(f"  RSS KiB after:  {after.get('VmRSS')} (anon {after.get('RssAnon')}, file {after.get('RssFile')})")
    print(f"  RssAnon {growth:+.2f} % (judged, within 5 %); VmRSS {grew('VmRSS'):+.2f} %; "
          f"RssFile {grew('RssFile'):+.2f} % (model pages read)")
    print(f"  end: slots busy {m1.get('slots_busy')}, queued {m1.get('queue_depth')}; server alive {alive}, "
          f"exit {rc}")
    for p in stats.problems[:10]:
        print(f"  problem: {p}")
    ok = (alive and rc == 0 and stats.malformed + warm.malformed == 0 and stats.errors + warm.errors == 0 and
          stats.completed > 0 and
          abs(growth) <= 5 and m1.get("slots_busy") == 0 and m1.get("queue_depth") == 0)
    print("soak: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
