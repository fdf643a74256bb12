/* A conversation as the model reads it: rendered by its chat template and
 * tokenized, with the control tokens the template writes as control tokens
 * and those a user or tool message writes as plain text (SECURITY.md: a user
 * typing "<end_of_turn>" must not end their turn). The server and `hearth
 * chat` both build their prompts here. */
#ifndef HEARTH_TEXT_CHAT_PROMPT_H
#define HEARTH_TEXT_CHAT_PROMPT_H

#include "text/template.h"
#include "text/vocab.h"

/* Renders and tokenizes. A BOS is added if the vocabulary asks for one,
 * unless the render starts with in->bos_token itself. On success *tokens is
 * malloc'd and holds *n_tokens ids (possibly 0). Errors: the template's
 * (HEARTH_ERR_FORMAT for the template, HEARTH_ERR_ARG for the inputs), the
 * tokenizer's, HEARTH_ERR_NOMEM. */
hearth_status chat_prompt_tokenize(const chat_template *t, const vocab *v, const chat_template_inputs *in,
                                   int32_t **tokens, int64_t *n_tokens, hearth_error *err);

#endif
