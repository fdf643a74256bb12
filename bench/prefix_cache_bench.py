#!/usr/bin/env python3
"""Time to first token with the prefix cache: a request whose prompt starts
with a long shared prefix (default 2,000 tokens of the perplexity fixture
text) and ends with a short question of its own, against hearth serve:

  cold       the first such request, the cache empty (a fresh --cache-dir)
  warm RAM   the same prefix, another question, after a request with another
             prompt took the only slot (so the slot's own tokens do not help)
  warm disk  the same again after the server restarted (RAM empty)

and, beside them, llama-server on the same model and threads with its own
prompt cache (cache_prompt, --cache-reuse): cold, and warm after another
prompt took its slot. Each figure is the best of --repeat runs, each run on a
prefix of its own (another stretch of the text), each server after a short
request of its own. Time to first token is the request's wall time with
max_tokens 1. Not a test: tests never time things.

usage: prefix_cache_bench.py [--model M] [--prefix-tokens 2000] [--threads 2]
                             [--repeat 3] [--hearth PATH] [--llama-server PATH]"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_bench import free_port, wait_healthy  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "..", "tests", "fixtures", "text", "genesis-1-28.txt")
QUESTIONS = ["\n\nQuestion: who is named first?\nAnswer:", "\n\nQuestion: what was made on the third day?\nAnswer:",
             "\n\nQuestion: how many days are told?\nAnswer:", "\n\nQuestion: what is the last word?\nAnswer:"]


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.time()
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status}: {data}")
    return time.time() - t0, data


def complete(port, prompt):
    seconds, data = post(port, "/v1/completions",
                         {"prompt": prompt, "max_tokens": 1, "temperature": 0, "cache_prompt": True})
    details = data.get("usage", {}).get("prompt_tokens_details") or {}
    return seconds, data["usage"]["prompt_tokens"], details.get("cached_tokens", 0)


def prefixes(port, n_tokens, count):
    """count stretches of the text of about n_tokens tokens each (by /tokenize)."""
    words = open(TEXT).read().split()
    per_token = len(words) / len(post(port, "/tokenize", {"content": " ".join(words)})[1]["tokens"])
    n_words = int(n_tokens * per_token * 1.04)  # the question and word joins tokenize a little differently
    out = []
    for i in range(count):
        start = (i * 997) % max(1, len(words) - n_words)
        out.append(" ".join(words[start:start + n_words]))
    return out


def start(cmd, port):
    """The server, up and past its first request (which pays for first touches of its memory)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(port, proc)
    post(port, "/v1/completions", {"prompt": "Warming up:", "max_tokens": 1, "cache_prompt": True})
    return proc


def stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


def bench_hearth(args, texts):
    cache_dir = tempfile.mkdtemp(prefix="hearth-prefix-bench-")
    port = free_port()
    cmd = [args.hearth, "serve", "-m", args.model, "--port", str(port), "-t", str(args.threads), "--parallel", "1",
           "-c", "4096", "--cache-dir", cache_dir]
    rows = {"cold": [], "warm RAM": [], "warm disk": []}
    try:
        proc = start(cmd, port)
        for i, text in enumerate(texts):
            rows["cold"].append(complete(port, text + QUESTIONS[0]))
            complete(port, "An unrelated prompt about the weather in " + str(i))
            rows["warm RAM"].append(complete(port, text + QUESTIONS[1]))
        stop(proc)
        proc = start(cmd, port)
        for text in texts:
            rows["warm disk"].append(complete(port, text + QUESTIONS[2]))
        stop(proc)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return rows


def bench_llama(args, texts):
    port = free_port()
    cmd = [args.llama_server, "-m", args.model, "--port", str(port), "-t", str(args.threads), "-np", "1",
           "-c", "4096", "--cache-reuse", "256"]
    rows = {"cold": [], "warm RAM": []}
    proc = start(cmd, port)
    try:
        for i, text in enumerate(texts):
            rows["cold"].append(complete(port, text + QUESTIONS[0]))
            complete(port, "An unrelated prompt about the weather in " + str(i))
            rows["warm RAM"].append(complete(port, text + QUESTIONS[1]))
    finally:
        stop(proc)
    return rows


def main():
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hearth")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(cache, "models", "gemma-3-270m-q4_k_m.gguf"))
    p.add_argument("--prefix-tokens", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hearth", default=os.path.join(HERE, "..", "build", "hearth"))
    p.add_argument("--llama-server", default=os.path.join(cache, "oracle", "build", "bin", "llama-server"))
    args = p.parse_args()

    port = free_port()
    proc = start([args.hearth, "serve", "-m", args.model, "--port", str(port), "--no-cache"], port)
    texts = prefixes(port, args.prefix_tokens, args.repeat)
    stop(proc)

    results = {"hearth": bench_hearth(args, texts)}
    if os.access(args.llama_server, os.X_OK):
        results["llama-server"] = bench_llama(args, texts)
    print(f"model {os.path.basename(args.model)}, {args.threads} threads, a shared prefix of ~{args.prefix_tokens} "
          f"tokens plus a question; best of {args.repeat}")
    print(f"| server | case | prompt tokens | cached | time to first token | of cold |")
    print(f"|---|---|---:|---:|---:|---:|")
    for server, rows in results.items():
        cold = min(r[0] for r in rows["cold"])
        for case, runs in rows.items():
            best = min(runs, key=lambda r: r[0])
            print(f"| {server} | {case} | {best[1]} | {best[2]} | {best[0] * 1000:.0f} ms | "
                  f"{100 * best[0] / cold:.1f} % |")


if __name__ == "__main__":
    main()
