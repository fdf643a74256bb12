#include "text/chat_prompt.h"

#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static hearth_status find_control_texts(void *ctx, const char *text, size_t len, text_span **spans, size_t *n_spans,
                                        hearth_error *err)
{
    return vocab_control_spans(ctx, text, len, spans, n_spans, err);
}

hearth_status chat_prompt_tokenize(const chat_template *t, const vocab *v, const chat_template_inputs *in,
                                   int32_t **tokens, int64_t *n_tokens, hearth_error *err)
{
    *tokens = NULL;
    *n_tokens = 0;
    hearth_error local = {0};
    if (!err)
        err = &local; /* the tokenizer's status is read from it */
    chat_template_guard guard = {.find = find_control_texts, .ctx = (void *)v};
    char *text = NULL;
    size_t len = 0, n_spans = 0;
    text_span *spans = NULL;
    hearth_status st = chat_template_render_guarded(t, in, &guard, &text, &len, &spans, &n_spans, err);
    if (st != HEARTH_OK)
        return st;
    bool add_bos = vocab_adds_bos(v) && !(in->bos_token && strncmp(text, in->bos_token, strlen(in->bos_token)) == 0);
    int32_t *ids = NULL;
    int64_t n = vocab_tokenize_guarded(v, text, len, add_bos, spans, n_spans, NULL, 0, err);
    if (n > 0 && (uint64_t)n > SIZE_MAX / sizeof *ids)
        st = error_set(err, HEARTH_ERR_NOMEM, "chat prompt: %lld tokens", (long long)n);
    else if (n > 0 && !(ids = malloc((size_t)n * sizeof *ids)))
        st = error_set(err, HEARTH_ERR_NOMEM, "chat prompt: out of memory for %lld tokens", (long long)n);
    else if (n > 0)
        n = vocab_tokenize_guarded(v, text, len, add_bos, spans, n_spans, ids, (size_t)n, err);
    if (st == HEARTH_OK && n < 0)
        st = err->status;
    free(text);
    free(spans);
    if (st != HEARTH_OK) {
        free(ids);
        return st;
    }
    *tokens = ids;
    *n_tokens = n;
    return HEARTH_OK;
}
