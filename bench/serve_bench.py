#!/usr/bin/env python3
"""Concurrent streaming clients against hearth serve and llama.cpp's
llama-server, on the same model, threads and slots, one after the other in one
run: aggregate generated tokens/s with 1 client and with N, and the ratio.

usage: serve_bench.py [--model M] [--clients 8] [--tokens 128] [--threads 2]
                      [--llama-server PATH] [--hearth PATH] [--repeat 2]

Each client streams one chat completion of --tokens tokens (ignore_eos, so all
are the same length) with its own short prompt; the figure is all clients'
tokens over the wall time from the first request to the last [DONE]. Time to
first token is the mean over clients. Not a test: tests never time things."""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

PROMPTS = ["Tell me about the sea.", "Describe a forest at night.", "Explain how rain forms.",
           "Write about a city in winter.", "What do cats like?", "Describe a mountain climb.",
           "Tell a story about a robot.", "Explain why the sky is blue.", "Describe a busy market.",
           "Write about an old library.", "What makes bread rise?", "Describe a thunderstorm."]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not come up")


def one_client(port, prompt, tokens, out):
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0.8,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    first = None
    chunks = 0
    usage = None
    for line in r:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        if ev.get("choices") and ev["choices"][0].get("delta", {}).get("content"):
            chunks += 1
            if first is None:
                first = time.time() - t0
    out.append((usage if usage is not None else chunks, first or 0.0))


def run_clients(port, n, tokens):
    out = []
    threads = [threading.Thread(target=one_client, args=(port, PROMPTS[i % len(PROMPTS)], tokens, out))
               for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    total = sum(k for k, _ in out)
    return total / wall, sum(f for _, f in out) / len(out), total


def stall(port, prompt_words):
    """A stream runs; a long prompt arrives. Returns the stream's longest gap
    between tokens while that prompt is prefilled, its median gap before, and
    the long request's time to its one token."""
    times = []
    started = threading.Event()

    def streamer():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 400,
                "temperature": 0.8, "stream": True, "ignore_eos": True}
        c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        for line in c.getresponse():
            if line.startswith(b"data: {"):
                times.append(time.time())
                if len(times) == 30:
                    started.set()

    t = threading.Thread(target=streamer)
    t.start()
    started.wait(120)
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"messages": [{"role": "user", "content": "word " * prompt_words}], "max_tokens": 1}
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    c.getresponse().read()
    t1 = time.time()
    t.join()
    before = sorted(b - a for a, b in zip(times, times[1:]) if b < t0)
    during = [b - a for a, b in zip(times, times[1:]) if t0 <= b <= t1 + 0.5]
    return max(during or [0.0]), before[len(before) // 2] if before else 0.0, t1 - t0


def bench(name, cmd, port, args):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        run_clients(port, 1, 8)  # warm up
        rows = {}
        for n in (1, args.clients):
            best = None
            for _ in range(args.repeat):
                r = run_clients(port, n, args.tokens)
                if best is None or r[0] > best[0]:
                    best = r
            rows[n] = best
            print(f"{name:10s} {n:2d} clients: {best[0]:7.1f} t/s aggregate, TTFT {best[1] * 1e3:6.0f} ms, "
                  f"{best[2]} tokens", flush=True)
        if args.stall_words:
            worst, median, ttft = stall(port, args.stall_words)
            print(f"{name:10s} a {args.stall_words}-word prompt arrives beside a stream: the stream's longest gap "
                  f"{worst * 1e3:.0f} ms (median before {median * 1e3:.0f} ms); the prompt's answer after "
                  f"{ttft * 1e3:.0f} ms", flush=True)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(cache, "hearth/models/gemma-3-270m-q4_k_m.gguf"))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=1024, help="context per slot")
    p.add_argument("--repeat", type=int, default=2, help="runs per point; the best is kept")
    p.add_argument("--stall-words", type=int, default=700,
                   help="a prompt of this many words arrives beside a running stream (0: skip)")
    p.add_argument("--hearth", default=os.path.join(here, "..", "build", "hearth"))
    p.add_argument("--llama-server", default=os.path.join(cache, "hearth/oracle/build/bin/llama-server"))
    args = p.parse_args()

    port = free_port()
    hearth = bench("hearth", [args.hearth, "serve", "-m", args.model, "--port", str(port), "-t", str(args.threads),
                              "--parallel", str(args.clients), "-c", str(args.ctx)], port, args)
    llama = None
    if os.path.exists(args.llama_server):
        port = free_port()
        llama = bench("llama.cpp", [args.llama_server, "-m", args.model, "--port", str(port), "-t", str(args.threads),
                                    "-tb", str(args.threads), "-np", str(args.clients),
                                    "-c", str(args.ctx * args.clients), "--no-webui"], port, args)
    else:
        print(f"(no llama-server at {args.llama_server}: scripts/oracle/build-llama-cpp.sh builds it)")
    n = args.clients
    print(f"\nhearth: {n} clients / 1 client = {hearth[n][0] / hearth[1][0]:.2f}x aggregate")
    if llama:
        print(f"llama.cpp: {n} clients / 1 client = {llama[n][0] / llama[1][0]:.2f}x aggregate")
        print(f"hearth / llama.cpp: 1 client {hearth[1][0] / llama[1][0]:.2f}x, "
              f"{n} clients {hearth[n][0] / llama[n][0]:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
