#!/usr/bin/env python3
"""Golden outputs for hearth's chat-template engine, from Python's jinja2.

Renders every template in TEMPLATES_DIR (default ../shared/data/templates)
against every conversation in tests/fixtures/template/conversations/, with
add_generation_prompt off and on, the way transformers' apply_chat_template
renders (transformers/utils/chat_template_utils.py):

  - ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[jinja2.ext.loopcontrols]) and a no-op {% generation %} tag
    standing in for its AssistantTracker;
  - its tojson filter (json.dumps with ensure_ascii=False), raise_exception
    and strftime_now globals;
  - render(messages=..., tools=... or None, documents=None,
    add_generation_prompt=..., bos_token/eos_token where the model has them,
    **extra variables).

strftime_now reads a fixed clock (FIXED_NOW, UTC) so the goldens are stable;
the C test fixes the same instant.

Also renders the feature cases in tests/fixtures/template/unit_cases.json
(each a template over a fixed small context, UNIT_CONTEXT) into
unit_expected.json: per case the output, or the error it raises.

Writes tests/fixtures/template/expected/<template>/<conversation>.gp<0|1>.txt
(the rendered prompt, byte for byte) or .err (a render that raises: the
exception's message) and tests/fixtures/template/cases.tsv listing them.

  python3 scripts/oracle/make_template_fixtures.py [TEMPLATES_DIR]
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "template")
FIXED_NOW = 1764072000  # 2025-11-25 12:00:00 UTC

# The special tokens each model's tokenizer passes (transformers passes the
# special_tokens_map: a template whose tokenizer has no BOS sees none).
TOKENS = {
    "HuggingFaceTB-SmolLM3-3B": ("<|im_start|>", "<|im_end|>"),
    "Qwen-Qwen2.5-7B-Instruct": (None, "<|im_end|>"),
    "Qwen-Qwen3-0.6B": (None, "<|im_end|>"),
    "Qwen3-Coder": (None, "<|im_end|>"),
    "Qwen3.5-4B": (None, "<|im_end|>"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    "google-gemma-4-31B-it": ("<bos>", "<eos>"),
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "openai-gpt-oss-120b": ("<|startoftext|>", "<|return|>"),
}


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %} renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        now = datetime.datetime.fromtimestamp(FIXED_NOW, tz=datetime.timezone.utc)
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


UNIT_CONTEXT = {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False}


def render_units(env):
    with open(os.path.join(FIXTURES, "unit_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    results = []
    for case in cases:
        try:
            out = {"output": env.from_string(case["template"]).render(**UNIT_CONTEXT)}
        except Exception as e:
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        results.append(out)
    with open(os.path.join(FIXTURES, "unit_expected.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("unit cases: %d, %d raise" % (len(results), sum("error" in r for r in results)))


def main():
    templates_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "data", "templates")
    env = make_env()
    render_units(env)
    conv_dir = os.path.join(FIXTURES, "conversations")
    convs = sorted(f[:-5] for f in os.listdir(conv_dir) if f.endswith(".json"))
    templates = sorted(f[:-6] for f in os.listdir(templates_dir) if f.endswith(".jinja"))
    lines = []
    counts = {}
    for stem in templates:
        with open(os.path.join(templates_dir, stem + ".jinja"), encoding="utf-8") as f:
            template = env.from_string(f.read())
        bos, eos = TOKENS.get(stem, (None, None))
        out_dir = os.path.join(FIXTURES, "expected", stem)
        os.makedirs(out_dir, exist_ok=True)
        for name in os.listdir(out_dir):
            os.remove(os.path.join(out_dir, name))
        for conv in convs:
            with open(os.path.join(conv_dir, conv + ".json"), encoding="utf-8") as f:
                case = json.load(f)
            for gp in (0, 1):
                kwargs = dict(case.get("vars", {}))
                if bos is not None:
                    kwargs["bos_token"] = bos
                if eos is not None:
                    kwargs["eos_token"] = eos
                try:
                    text = template.render(
                        messages=case["messages"],
                        tools=case.get("tools"),
                        documents=None,
                        add_generation_prompt=bool(gp),
                        **kwargs,
                    )
                    ext, data = "txt", text
                except Exception as e:  # the C engine must fail too
                    ext, data = "err", "%s: %s" % (type(e).__name__, e)
                fname = "%s.gp%d.%s" % (conv, gp, ext)
                with open(os.path.join(out_dir, fname), "w", encoding="utf-8", newline="") as f:
                    f.write(data)
                lines.append("\t".join([stem, conv, str(gp), bos or "-", eos or "-", ext]))
                counts[(stem, ext)] = counts.get((stem, ext), 0) + 1
    with open(os.path.join(FIXTURES, "cases.tsv"), "w", encoding="utf-8") as f:
        f.write("# template\tconversation\tadd_generation_prompt\tbos\teos\tresult (txt: output, err: raises)\n")
        f.write("\n".join(lines) + "\n")
    for stem in templates:
        print("%-45s %3d rendered, %3d raise" % (stem, counts.get((stem, "txt"), 0), counts.get((stem, "err"), 0)))


if __name__ == "__main__":
    main()
