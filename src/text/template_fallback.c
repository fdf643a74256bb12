/* Chat templates for model files that ship none. Gemma 3's GGUF files are
 * often converted without tokenizer.chat_template (the default model among
 * them), yet their turn format is fixed and well known: this is it, written
 * here as a template so that it goes through the same renderer, budgets and
 * tests as any other. */
#include "text/template.h"

#include <string.h>

/* Gemma's turns: <start_of_turn>user / model, <end_of_turn>. Gemma has no
 * system role: system messages are put before the first user turn's text,
 * followed by a blank line, as Gemma 3's own template and llama.cpp do.
 * Content may be a string or a list of parts, of which the text parts count. */
static const char gemma_template[] =
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% set text = namespace(value='') %}"
    "{% if m.content is string %}{% set text.value = m.content %}"
    "{% elif m.content %}{% for p in m.content %}{% if p.type == 'text' %}"
    "{% set text.value = text.value + p.text %}{% endif %}{% endfor %}{% endif %}"
    "{% if m.role == 'system' %}{% set ns.system = ns.system + text.value + '\n\n' %}"
    "{% else %}{{ '<start_of_turn>' + ('model' if m.role == 'assistant' else m.role) + '\n' }}"
    "{{ ns.system }}{% set ns.system = '' %}{{ text.value | trim }}{{ '<end_of_turn>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

const char *chat_template_fallback(const char *architecture)
{
    static const char *const gemma_family[] = {"gemma", "gemma2", "gemma3", "gemma3n"};
    for (size_t i = 0; architecture && i < sizeof gemma_family / sizeof *gemma_family; i++)
        if (strcmp(architecture, gemma_family[i]) == 0)
            return gemma_template;
    return NULL;
}
