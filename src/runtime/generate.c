#include "runtime/generate.h"

#include "base/clock.h"
#include "base/error.h"
#include "runtime/stop.h"
#include "runtime/utf8_stream.h"

#include <stdlib.h>
#include <string.h>

const char *generate_finish_name(generate_finish finish)
{
    switch (finish) {
    case GENERATE_FINISH_LENGTH: return "length";
    case GENERATE_FINISH_CONTEXT_FULL: return "context full";
    case GENERATE_FINISH_EOG: return "end of generation";
    case GENERATE_FINISH_STOP: return "stop string";
    case GENERATE_FINISH_CANCELLED: return "cancelled";
    }
    return "?";
}

/* Keeps n_keep tokens from the start and the newest half of the rest, and runs
 * them again from an empty cache: simpler than re-rotating cached keys, and
 * exactly what the model would compute for that shorter history. */
static hearth_status shift_context(session *s, int32_t n_keep, hearth_error *err)
{
    int32_t n_past = session_n_past(s);
    if (n_keep < 0 || n_keep > n_past / 2)
        n_keep = 0;
    int32_t n_recent = (n_past - n_keep) / 2;
    int32_t *kept = malloc((size_t)(n_keep + n_recent) * sizeof *kept);
    if (!kept)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory shifting the context");
    const int32_t *history = session_tokens(s);
    memcpy(kept, history, (size_t)n_keep * sizeof *kept);
    memcpy(kept + n_keep, history + n_past - n_recent, (size_t)n_recent * sizeof *kept);
    session_reset(s);
    hearth_status st = session_eval(s, kept, n_keep + n_recent, err);
    free(kept);
    return st;
}

enum { PIECE_CAP = 256 };

hearth_status generate_run(session *s, sampler *smp, const vocab *v, const int32_t *prompt, int32_t n_prompt,
                           const generate_params *params, generate_emit_fn emit, void *user, generate_stats *stats,
                           hearth_error *err)
{
    memset(stats, 0, sizeof *stats);
    stats->n_prompt = n_prompt;
    if (n_prompt < 1)
        return error_set(err, HEARTH_ERR_ARG, "the prompt is empty");
    if (n_prompt > session_n_ctx(s) - session_n_past(s))
        return error_set(err, HEARTH_ERR_ARG, "the prompt has %d tokens; %d fit in the context (%d of %d used)",
                         n_prompt, session_n_ctx(s) - session_n_past(s), session_n_past(s), session_n_ctx(s));
    stop_matcher stops;
    hearth_status st = stop_matcher_init(&stops, params->stops, params->n_stops > 0 ? (size_t)params->n_stops : 0, err);
    if (st != HEARTH_OK)
        return st;

    double t0 = clock_seconds();
    st = session_eval(s, prompt, n_prompt, err);
    stats->prompt_seconds = clock_seconds() - t0;
    stats->n_restored = session_last_restored(s);
    for (int32_t i = 0; i < n_prompt; i++)
        sampler_accept(smp, prompt[i]);

    utf8_stream utf8;
    utf8_stream_init(&utf8);
    char piece[PIECE_CAP], whole[PIECE_CAP + UTF8_STREAM_MAX_HELD];
    char out[PIECE_CAP + UTF8_STREAM_MAX_HELD + 2 * STOP_MAX_LENGTH];
    stats->finish = GENERATE_FINISH_LENGTH;
    t0 = clock_seconds();
    bool running = st == HEARTH_OK;
    while (running && (params->n_predict < 0 || stats->n_generated < params->n_predict)) {
        int32_t token = sampler_sample(smp, session_logits(s));
        sampler_accept(smp, token);
        if (!params->ignore_eog && vocab_is_end_of_generation(v, token)) {
            stats->finish = GENERATE_FINISH_EOG;
            break;
        }
        stats->n_generated++;
        size_t n_piece = vocab_token_to_piece(v, token, false, piece, sizeof piece);
        if (n_piece > sizeof piece)
            n_piece = sizeof piece; /* no real token is this long; the piece is cut, never overrun */
        size_t n_whole = utf8_stream_push(&utf8, piece, n_piece, whole, sizeof whole);
        size_t n_out = stop_matcher_push(&stops, whole, n_whole, out, sizeof out);
        if (n_out && !emit(user, out, n_out)) {
            stats->finish = GENERATE_FINISH_CANCELLED;
            break;
        }
        if (stop_matcher_matched(&stops) >= 0) {
            stats->finish = GENERATE_FINISH_STOP;
            break;
        }
        if (session_n_past(s) == session_n_ctx(s)) {
            if (!params->context_shift) {
                stats->finish = GENERATE_FINISH_CONTEXT_FULL;
                break;
            }
            if ((st = shift_context(s, params->n_keep, err)) != HEARTH_OK)
                break;
        }
        st = session_eval(s, &token, 1, err);
        running = st == HEARTH_OK;
    }
    stats->generate_seconds = clock_seconds() - t0;
    if (st == HEARTH_OK && stats->finish != GENERATE_FINISH_STOP && stats->finish != GENERATE_FINISH_CANCELLED) {
        /* Whatever was held back (a possible stop string's start, an
         * unfinished character) is text the user is owed. */
        size_t n_whole = utf8_stream_flush(&utf8, whole, sizeof whole);
        size_t n_out = stop_matcher_push(&stops, whole, n_whole, out, sizeof out);
        n_out += stop_matcher_flush(&stops, out + n_out, sizeof out - n_out);
        if (stop_matcher_matched(&stops) >= 0)
            stats->finish = GENERATE_FINISH_STOP;
        if (n_out)
            emit(user, out, n_out);
    }
    return st;
}
