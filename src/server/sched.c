#include "server/sched.h"

#include "base/clock.h"
#include "base/error.h"
#include "runtime/utf8_stream.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PIECE_CAP = 256 };

struct sched_job {
    /* Fixed at submit. */
    sched *owner;
    int32_t *prompt, n_prompt;
    sampler_params sampling; /* its logit_bias points at bias */
    sampler_bias *bias;
    int32_t max_tokens;
    char *stops[STOP_MAX_STRINGS];
    int n_stops;
    bool ignore_eos, logprobs;
    int32_t top_logprobs;
    double t_submit;

    /* Guarded by the scheduler's lock. */
    int refs;           /* the submitter's and the scheduler's */
    bool released;      /* the submitter let go: stop working on it */
    pthread_cond_t ready; /* new output or the end */
    sched_output pending; /* output not yet handed over, and the counts */
    sched_job *next_queued;
};

typedef enum slot_phase { SLOT_IDLE, SLOT_PREFILL, SLOT_GENERATE } slot_phase;

/* Owned by the scheduler thread; only `job` and `phase` are read under the
 * lock by others (metrics). */
typedef struct slot {
    int32_t seq;
    slot_phase phase;
    sched_job *job;
    int32_t *tokens; /* what the sequence holds: n_past tokens */
    int32_t n_past;
    int32_t n_prompt_done;    /* of job->prompt, evaluated (or kept from before) */
    int32_t next_token;       /* sampled, to be evaluated next pass */
    int32_t n_generated;
    sampler *smp;
    stop_matcher stops;
    utf8_stream utf8;
    double t_start, t_first;
    uint64_t last_used;
    bool restore_pending; /* assigned a job whose prompt the prefix cache may hold more of */
} slot;

struct sched {
    const model *model;
    threadpool *pool;
    model_state *state;
    prefix_cache *cache; /* NULL: none; the scheduler thread's alone */
    const vocab *vocab;
    int32_t n_vocab, n_ctx, n_batch, prefill_chunk, max_queued;
    int32_t n_slots;
    slot *slots;
    float *logits; /* n_slots rows: at most one output per slot per pass */
    int32_t *b_tokens, *b_seq, *b_pos;
    bool *b_output;
    slot **b_out_slot; /* the slot of each output row */
    int32_t b_n_decode; /* the batch's first entries: generating slots' tokens */
    uint64_t clock; /* counts assignments, for least-recently-used ties */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t work;
    bool stopping;
    sched_job *queue_head, *queue_tail;
    int32_t n_queued;
    sched_metrics metrics;
};

void sched_output_free(sched_output *o)
{
    free(o->text);
    free(o->tokens);
    memset(o, 0, sizeof *o);
}

/* ---- jobs ---- */

static void job_free(sched_job *j)
{
    free(j->prompt);
    free(j->bias);
    for (int i = 0; i < j->n_stops; i++)
        free(j->stops[i]);
    sched_output_free(&j->pending);
    pthread_cond_destroy(&j->ready);
    free(j);
}

/* Under the lock. */
static void job_unref(sched_job *j)
{
    if (--j->refs == 0)
        job_free(j);
}

static bool append_text(sched_output *o, const char *text, size_t len)
{
    if (o->len + len + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + len + 1)
            cap *= 2;
        char *grown = realloc(o->text, cap);
        if (!grown)
            return false;
        o->text = grown, o->cap = cap;
    }
    memcpy(o->text + o->len, text, len);
    o->len += len;
    o->text[o->len] = '\0';
    return true;
}

static bool append_token(sched_output *o, const sched_token *t)
{
    if (o->n_tokens == o->cap_tokens) {
        int32_t cap = o->cap_tokens ? 2 * o->cap_tokens : 16;
        sched_token *grown = realloc(o->tokens, (size_t)cap * sizeof *grown);
        if (!grown)
            return false;
        o->tokens = grown, o->cap_tokens = cap;
    }
    o->tokens[o->n_tokens++] = *t;
    return true;
}

/* ---- slots ---- */

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int32_t n = na < nb ? na : nb, k = 0;
    while (k < n && a[k] == b[k])
        k++;
    return k;
}

/* Ends the slot's job (under the lock) and frees the slot. */
static void slot_finish(sched *s, slot *sl, sched_finish finish, const hearth_error *err)
{
    sched_job *j = sl->job;
    double now = clock_seconds();
    sched_output *o = &j->pending;
    o->finish = finish;
    o->n_generated = sl->n_generated;
    if (sl->t_first > 0) {
        o->prompt_seconds = sl->t_first - sl->t_start;
        o->generate_seconds = now - sl->t_first;
    } else if (sl->t_start > 0) {
        o->prompt_seconds = now - sl->t_start;
    }
    if (err)
        o->error = *err;
    switch (finish) {
    case SCHED_FINISH_CANCELLED: s->metrics.requests_cancelled++; break;
    case SCHED_FINISH_ERROR: s->metrics.requests_failed++; break;
    default: s->metrics.requests_finished++; break;
    }
    pthread_cond_broadcast(&j->ready);
    job_unref(j);
    sl->job = NULL;
    sl->phase = SLOT_IDLE;
    sampler_free(sl->smp);
    sl->smp = NULL;
}

/* Gives a queued job the free slot sharing the longest prefix with its
 * prompt (least recently used among equals). Under the lock. */
static void assign(sched *s, sched_job *j)
{
    slot *best = NULL;
    int32_t best_keep = -1;
    for (int32_t i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase != SLOT_IDLE)
            continue;
        /* At least one prompt token is evaluated, for its logits. */
        int32_t keep = common_prefix(sl->tokens, sl->n_past, j->prompt, j->n_prompt - 1);
        keep = model_state_seq_resume_point(s->state, sl->seq, keep);
        if (keep > best_keep || (keep == best_keep && sl->last_used < best->last_used))
            best = sl, best_keep = keep;
    }
    hearth_error err = {0};
    sampler *smp = NULL;
    best->job = j;
    best->n_past = best_keep;
    best->n_prompt_done = best_keep;
    best->n_generated = 0;
    best->t_start = clock_seconds();
    best->t_first = 0;
    best->last_used = ++s->clock;
    best->restore_pending = s->cache != NULL;
    utf8_stream_init(&best->utf8);
    j->pending.n_prompt = j->n_prompt;
    j->pending.n_cached = best_keep;
    j->pending.queue_seconds = best->t_start - j->t_submit;
    s->metrics.prompt_tokens += (uint64_t)j->n_prompt;
    s->metrics.cached_tokens += (uint64_t)best_keep;
    hearth_status st = sampler_create(&j->sampling, s->n_vocab, &smp, &err);
    if (st == HEARTH_OK)
        st = stop_matcher_init(&best->stops, (const char *const *)j->stops, (size_t)j->n_stops, &err);
    best->smp = smp;
    best->phase = SLOT_PREFILL;
    if (st != HEARTH_OK) {
        slot_finish(s, best, SCHED_FINISH_ERROR, &err);
        return;
    }
    for (int32_t i = 0; i < j->n_prompt; i++)
        sampler_accept(smp, j->prompt[i]);
}

/* ---- one pass ---- */

static void token_logprobs(const float *logits, int32_t n_vocab, int32_t id, int32_t n_top, sched_token *t)
{
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - max);
    const float lse = max + (float)log(sum);
    t->logprob = logits[id] - lse;
    /* The n_top largest, by insertion into a short sorted list. */
    t->n_top = 0;
    for (int32_t i = 0; i < n_vocab && n_top > 0; i++) {
        float l = logits[i];
        if (t->n_top == n_top && l <= t->top_logprob[n_top - 1])
            continue;
        int32_t k = t->n_top < n_top ? t->n_top++ : n_top - 1;
        while (k > 0 && t->top_logprob[k - 1] < l) {
            t->top_logprob[k] = t->top_logprob[k - 1];
            t->top_id[k] = t->top_id[k - 1];
            k--;
        }
        t->top_logprob[k] = l;
        t->top_id[k] = i;
    }
    for (int32_t k = 0; k < t->n_top; k++)
        t->top_logprob[k] -= lse;
}

/* Samples the slot's next token from its logits and passes its text on.
 * Called without the lock; takes it to hand the output over. */
static void sample(sched *s, slot *sl, const float *logits)
{
    sched_job *j = sl->job;
    int32_t token = sampler_sample(sl->smp, logits);
    sampler_accept(sl->smp, token);
    sched_token info = {.id = token};
    if (j->logprobs)
        token_logprobs(logits, s->n_vocab, token, j->top_logprobs, &info);
    if (sl->t_first == 0)
        sl->t_first = clock_seconds();

    sched_finish finish = SCHED_RUNNING;
    char piece[PIECE_CAP], whole[PIECE_CAP + UTF8_STREAM_MAX_HELD];
    char out[PIECE_CAP + UTF8_STREAM_MAX_HELD + 2 * STOP_MAX_LENGTH];
    size_t n_out = 0;
    bool eog = !j->ignore_eos && vocab_is_end_of_generation(s->vocab, token);
    if (eog) {
        finish = SCHED_FINISH_STOP;
    } else {
        sl->n_generated++;
        size_t n_piece = vocab_token_to_piece(s->vocab, token, false, piece, sizeof piece);
        if (n_piece > sizeof piece)
            n_piece = sizeof piece; /* no real token is this long; cut, never overrun */
        size_t n_whole = utf8_stream_push(&sl->utf8, piece, n_piece, whole, sizeof whole);
        n_out = stop_matcher_push(&sl->stops, whole, n_whole, out, sizeof out);
        if (stop_matcher_matched(&sl->stops) >= 0)
            finish = SCHED_FINISH_STOP;
        else if (j->max_tokens >= 0 && sl->n_generated >= j->max_tokens)
            finish = SCHED_FINISH_LENGTH;
        else if (sl->n_past >= s->n_ctx)
            finish = SCHED_FINISH_LENGTH; /* no room to evaluate the token */
    }
    if (finish != SCHED_RUNNING && stop_matcher_matched(&sl->stops) < 0) {
        /* Whatever was held back (a possible stop string's start, an
         * unfinished character) is text the client is owed. */
        size_t n_whole = utf8_stream_flush(&sl->utf8, whole, sizeof whole);
        n_out += stop_matcher_push(&sl->stops, whole, n_whole, out + n_out, sizeof out - n_out);
        n_out += stop_matcher_flush(&sl->stops, out + n_out, sizeof out - n_out);
        if (stop_matcher_matched(&sl->stops) >= 0)
            finish = SCHED_FINISH_STOP;
    }
    sl->next_token = token;

    pthread_mutex_lock(&s->lock);
    s->metrics.generated_tokens++;
    bool ok = (n_out == 0 || append_text(&j->pending, out, n_out)) && (!j->logprobs || append_token(&j->pending, &info));
    if (!ok) {
        hearth_error err;
        error_set(&err, HEARTH_ERR_NOMEM, "out of memory holding the output");
        slot_finish(s, sl, SCHED_FINISH_ERROR, &err);
    } else if (finish != SCHED_RUNNING) {
        slot_finish(s, sl, finish, NULL);
    } else {
        sl->phase = SLOT_GENERATE;
        pthread_cond_broadcast(&j->ready);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Builds the next batch from the slots (under the lock): every generating
 * slot's token first, then prompt chunks in the room left. Returns its size. */
static int32_t build_batch(sched *s, int32_t *n_outputs)
{
    int32_t n = 0, n_generating = 0;
    *n_outputs = 0;
    for (int32_t i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase != SLOT_GENERATE)
            continue;
        s->b_tokens[n] = sl->next_token;
        s->b_seq[n] = sl->seq;
        s->b_pos[n] = sl->n_past;
        s->b_output[n] = true;
        s->b_out_slot[(*n_outputs)++] = sl;
        n++, n_generating++;
    }
    s->b_n_decode = n_generating;
    /* Prompts, oldest assignment first, each in chunks: while streams are
     * running, small ones, so that their next tokens are not held up long. */
    int32_t room = s->n_batch - n;
    int32_t chunk_cap = n_generating > 0 ? s->prefill_chunk : s->n_batch;
    for (;;) {
        slot *oldest = NULL;
        for (int32_t i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            bool in_batch = false;
            for (int32_t k = n_generating; k < n && !in_batch; k++)
                in_batch = s->b_seq[k] == sl->seq;
            if (sl->phase == SLOT_PREFILL && !in_batch && (!oldest || sl->last_used < oldest->last_used))
                oldest = sl;
        }
        if (!oldest || room <= 0 || chunk_cap <= 0)
            break;
        int32_t left = oldest->job->n_prompt - oldest->n_prompt_done;
        int32_t count = left < room ? left : room;
        if (count > chunk_cap)
            count = chunk_cap;
        /* A recurrent state is kept by the prefix cache only where a pass
         * leaves it. */
        if (s->cache) {
            int32_t end = prefix_cache_batch_end(s->cache, oldest->n_past, oldest->n_past + left);
            if (end - oldest->n_past < count)
                count = end - oldest->n_past;
        }
        for (int32_t k = 0; k < count; k++) {
            s->b_tokens[n + k] = oldest->job->prompt[oldest->n_prompt_done + k];
            s->b_seq[n + k] = oldest->seq;
            s->b_pos[n + k] = oldest->n_past + k;
            s->b_output[n + k] = false;
        }
        if (count == left) {
            s->b_output[n + count - 1] = true;
            s->b_out_slot[(*n_outputs)++] = oldest;
        }
        n += count;
        room -= count;
        chunk_cap -= count;
    }
    return n;
}

/* After a pass: what each slot in the batch now holds. */
static void advance_slots(sched *s, int32_t n)
{
    for (int32_t k = 0; k < n;) {
        slot *sl = NULL;
        for (int32_t i = 0; i < s->n_slots && !sl; i++)
            if (s->slots[i].seq == s->b_seq[k])
                sl = &s->slots[i];
        int32_t run = 0;
        while (k + run < n && s->b_seq[k + run] == sl->seq)
            run++;
        memcpy(sl->tokens + sl->n_past, s->b_tokens + k, (size_t)run * sizeof *sl->tokens);
        sl->n_past += run;
        if (sl->phase == SLOT_PREFILL)
            sl->n_prompt_done += run;
        k += run;
    }
}

/* Under the lock, in the scheduler thread: restores what the prefix cache
 * holds of newly assigned prompts, letting the lock go meanwhile. The slots
 * taken are this thread's: a prefilling slot is not assigned again, and a
 * release is seen at the next admit. Returns whether there were any. */
static bool restore_prefixes(sched *s)
{
    slot *todo[MODEL_MAX_SEQUENCES];
    int32_t n = 0, gained[MODEL_MAX_SEQUENCES];
    for (int32_t i = 0; i < s->n_slots; i++) {
        if (s->slots[i].restore_pending) {
            s->slots[i].restore_pending = false;
            todo[n++] = &s->slots[i];
        }
    }
    if (n == 0)
        return false;
    pthread_mutex_unlock(&s->lock);
    for (int32_t k = 0; k < n; k++) {
        slot *sl = todo[k];
        const sched_job *j = sl->job;
        int32_t held = prefix_cache_restore(s->cache, s->state, sl->seq, j->prompt, j->n_prompt, sl->n_past);
        gained[k] = held - sl->n_past;
        memcpy(sl->tokens + sl->n_past, j->prompt + sl->n_past, (size_t)gained[k] * sizeof *sl->tokens);
        sl->n_past = sl->n_prompt_done = held;
    }
    pthread_mutex_lock(&s->lock);
    for (int32_t k = 0; k < n; k++) {
        todo[k]->job->pending.n_cached += gained[k];
        s->metrics.cached_tokens += (uint64_t)gained[k];
    }
    return true;
}

/* Without the lock, after a pass: the prefix cache keeps the blocks the
 * batch's runs completed. */
static void store_prefixes(sched *s, int32_t n)
{
    for (int32_t k = 0; k < n;) {
        int32_t run = 1;
        while (k + run < n && s->b_seq[k + run] == s->b_seq[k])
            run++;
        for (int32_t i = 0; i < s->n_slots; i++)
            if (s->slots[i].seq == s->b_seq[k])
                prefix_cache_store(s->cache, s->state, s->b_seq[k], s->slots[i].tokens, s->b_pos[k],
                                   s->b_pos[k + run - 1] + 1);
        k += run;
    }
}

/* Under the lock: moves queued jobs into free slots, and drops the released
 * ones. Any thread may call it: a free slot is in no batch. */
static void admit_queued(sched *s)
{
    sched_job *last_kept = NULL;
    for (sched_job **p = &s->queue_head; *p;) {
        sched_job *j = *p;
        bool free_slot = false;
        for (int32_t i = 0; i < s->n_slots && !free_slot; i++)
            free_slot = s->slots[i].phase == SLOT_IDLE;
        if (!j->released && !free_slot) {
            /* It waits on; released ones behind it still leave. */
            last_kept = j;
            p = &j->next_queued;
            continue;
        }
        *p = j->next_queued;
        s->n_queued--;
        if (j->released) {
            j->pending.finish = SCHED_FINISH_CANCELLED;
            s->metrics.requests_cancelled++;
            job_unref(j);
        } else {
            assign(s, j);
        }
    }
    s->queue_tail = last_kept;
}

/* Under the lock, in the scheduler thread only (a running slot may be in the
 * batch it is working on): ends the released jobs, then admits. */
static void admit(sched *s)
{
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].job && s->slots[i].job->released)
            slot_finish(s, &s->slots[i], SCHED_FINISH_CANCELLED, NULL);
    admit_queued(s);
}

static void *run(void *p)
{
    sched *s = p;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        admit(s);
        /* Jobs may come and go while the lock is let go: admit again. */
        if (s->cache && !s->stopping && restore_prefixes(s))
            continue;
        int32_t n_outputs, n = s->stopping ? 0 : build_batch(s, &n_outputs);
        if (s->stopping)
            break;
        if (n == 0) {
            pthread_cond_wait(&s->work, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);

        /* The slots in the batch are this thread's alone until they finish:
         * a release meanwhile is seen at the next admit. */
        model_batch batch = {.n = n, .tokens = s->b_tokens, .seq = s->b_seq, .pos = s->b_pos, .output = s->b_output};
        hearth_error err = {0};
        double t0 = clock_seconds();
        hearth_status st = model_forward_batch(s->model, s->state, s->pool, &batch, s->logits, &err);
        double seconds = clock_seconds() - t0;
        if (st == HEARTH_OK) {
            pthread_mutex_lock(&s->lock);
            advance_slots(s, n);
            pthread_mutex_unlock(&s->lock);
            if (s->cache)
                store_prefixes(s, n);
            for (int32_t r = 0; r < n_outputs; r++)
                sample(s, s->b_out_slot[r], s->logits + (size_t)r * (size_t)s->n_vocab);
        }
        pthread_mutex_lock(&s->lock);
        s->metrics.passes++;
        s->metrics.decode_seconds += seconds * s->b_n_decode / n;
        s->metrics.prefill_seconds += seconds * (n - s->b_n_decode) / n;
        if (st != HEARTH_OK) {
            /* Not the clients' fault as a rule (their requests were checked);
             * every job in the batch ends with the error. */
            for (int32_t k = 0; k < n; k++)
                for (int32_t i = 0; i < s->n_slots; i++)
                    if (s->slots[i].seq == s->b_seq[k] && s->slots[i].job)
                        slot_finish(s, &s->slots[i], SCHED_FINISH_ERROR, &err);
        }
    }
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].job)
            slot_finish(s, &s->slots[i], SCHED_FINISH_CANCELLED, NULL);
    while (s->queue_head) {
        sched_job *j = s->queue_head;
        s->queue_head = j->next_queued;
        j->pending.finish = SCHED_FINISH_CANCELLED;
        pthread_cond_broadcast(&j->ready);
        job_unref(j);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the public calls ---- */

hearth_status sched_create(const model *m, threadpool *pool, const sched_params *params, sched **out,
                           hearth_error *err)
{
    *out = NULL;
    if (params->n_slots < 1 || params->n_slots > MODEL_MAX_SEQUENCES)
        return error_set(err, HEARTH_ERR_ARG, "%d parallel slots: must be 1 to %d", params->n_slots,
                         MODEL_MAX_SEQUENCES);
    if (params->n_ctx < 2 || params->n_batch < 0 || params->prefill_chunk < 0 || params->max_queued < 0)
        return error_set(err, HEARTH_ERR_ARG, "context %d, batch %d, prefill chunk %d, queue %d: out of range",
                         params->n_ctx, params->n_batch, params->prefill_chunk, params->max_queued);
    sched *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->model = m;
    s->pool = pool;
    s->vocab = model_vocab(m);
    s->n_vocab = model_n_vocab(m);
    s->n_slots = params->n_slots;
    s->n_ctx = params->n_ctx;
    s->n_batch = params->n_batch ? params->n_batch : 512;
    if (s->n_batch < s->n_slots)
        s->n_batch = s->n_slots; /* every generating slot's token fits in one pass */
    s->prefill_chunk = params->prefill_chunk ? params->prefill_chunk : 128;
    s->max_queued = params->max_queued ? params->max_queued : 4 * s->n_slots;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    hearth_status st = model_state_create_kv(m, s->n_slots, s->n_ctx, s->n_batch, params->kv_type, &s->state, err);
    if (st == HEARTH_OK && params->prefix_cache)
        st = prefix_cache_create(m, s->state, params->prefix_cache, &s->cache, err);
    size_t nb = (size_t)s->n_batch;
    if (st == HEARTH_OK &&
        (!(s->slots = calloc((size_t)s->n_slots, sizeof *s->slots)) ||
         !(s->logits = malloc((size_t)s->n_slots * (size_t)s->n_vocab * sizeof *s->logits)) ||
         !(s->b_tokens = malloc(nb * sizeof *s->b_tokens)) || !(s->b_seq = malloc(nb * sizeof *s->b_seq)) ||
         !(s->b_pos = malloc(nb * sizeof *s->b_pos)) || !(s->b_output = malloc(nb * sizeof *s->b_output)) ||
         !(s->b_out_slot = malloc((size_t)s->n_slots * sizeof *s->b_out_slot))))
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; st == HEARTH_OK && i < s->n_slots; i++) {
        s->slots[i].seq = i;
        if (!(s->slots[i].tokens = malloc((size_t)s->n_ctx * sizeof *s->slots[i].tokens)))
            st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    s->metrics.n_slots = s->n_slots;
    s->metrics.max_queued = s->max_queued;
    s->metrics.kv_capacity = (int64_t)s->n_slots * s->n_ctx;
    if (st == HEARTH_OK) {
        if (pthread_create(&s->thread, NULL, run, s) != 0)
            st = error_set(err, HEARTH_ERR_NOMEM, "cannot start the scheduler thread");
        else
            s->thread_started = true;
    }
    if (st != HEARTH_OK) {
        sched_free(s);
        return st;
    }
    *out = s;
    return HEARTH_OK;
}

void sched_free(sched *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    for (int32_t i = 0; s->slots && i < s->n_slots; i++)
        free(s->slots[i].tokens);
    free(s->slots);
    free(s->logits);
    free(s->b_tokens);
    free(s->b_seq);
    free(s->b_pos);
    free(s->b_output);
    free(s->b_out_slot);
    prefix_cache_free(s->cache);
    model_state_free(s->state);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

hearth_status sched_submit(sched *s, const sched_request *req, sched_job **out, hearth_error *err)
{
    *out = NULL;
    if (req->n_prompt < 1)
        return error_set(err, HEARTH_ERR_ARG, "the prompt is empty");
    if (req->n_prompt >= s->n_ctx)
        return error_set(err, HEARTH_ERR_ARG,
                         "the prompt has %d tokens; the context of %d per slot leaves no room to generate",
                         req->n_prompt, s->n_ctx);
    if (req->n_stops < 0 || req->n_stops > STOP_MAX_STRINGS)
        return error_set(err, HEARTH_ERR_ARG, "%d stop strings: at most %d", req->n_stops, STOP_MAX_STRINGS);
    if (req->top_logprobs < 0 || req->top_logprobs > SCHED_MAX_TOP_LOGPROBS)
        return error_set(err, HEARTH_ERR_ARG, "top_logprobs %d: must be 0 to %d", req->top_logprobs,
                         SCHED_MAX_TOP_LOGPROBS);
    /* Checked here, where the client can still be told, not in the thread. */
    sampler *probe = NULL;
    hearth_status st = sampler_create(&req->sampling, s->n_vocab, &probe, err);
    sampler_free(probe);
    stop_matcher probe_stops;
    if (st == HEARTH_OK)
        st = stop_matcher_init(&probe_stops, req->stops, (size_t)req->n_stops, err);
    if (st != HEARTH_OK)
        return st;
    for (int32_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= s->n_vocab)
            return error_set(err, HEARTH_ERR_ARG, "prompt token %d: id %d outside the vocabulary of %d", i,
                             req->prompt[i], s->n_vocab);

    sched_job *j = calloc(1, sizeof *j);
    if (!j || !(j->prompt = malloc((size_t)req->n_prompt * sizeof *j->prompt))) {
        free(j);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    memcpy(j->prompt, req->prompt, (size_t)req->n_prompt * sizeof *j->prompt);
    j->n_prompt = req->n_prompt;
    j->sampling = req->sampling;
    j->sampling.logit_bias = NULL;
    if (req->sampling.n_logit_bias > 0) {
        size_t bytes = (size_t)req->sampling.n_logit_bias * sizeof *j->bias;
        if (!(j->bias = malloc(bytes))) {
            job_free(j);
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        }
        memcpy(j->bias, req->sampling.logit_bias, bytes);
        j->sampling.logit_bias = j->bias;
    }
    j->max_tokens = req->max_tokens;
    j->ignore_eos = req->ignore_eos;
    j->logprobs = req->logprobs;
    j->top_logprobs = req->logprobs ? req->top_logprobs : 0;
    for (; j->n_stops < req->n_stops; j->n_stops++)
        if (!(j->stops[j->n_stops] = strdup(req->stops[j->n_stops]))) {
            job_free(j);
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        }
    pthread_cond_init(&j->ready, NULL);
    j->owner = s;
    j->refs = 2;
    j->t_submit = clock_seconds();
    j->pending.n_prompt = req->n_prompt;

    pthread_mutex_lock(&s->lock);
    if (s->n_queued >= s->max_queued || s->stopping) {
        s->metrics.requests_rejected++;
        pthread_mutex_unlock(&s->lock);
        job_free(j);
        return error_set(err, HEARTH_ERR_BUSY, "all %d slots are busy and %d requests are waiting; try again later",
                         s->n_slots, s->max_queued);
    }
    if (s->queue_tail)
        s->queue_tail->next_queued = j;
    else
        s->queue_head = j;
    s->queue_tail = j;
    s->n_queued++;
    /* Straight into a free slot when there is one: the queue holds only
     * requests that really wait. */
    admit_queued(s);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    *out = j;
    return HEARTH_OK;
}

static pthread_mutex_t *job_lock(sched_job *j) { return &j->owner->lock; }

bool sched_job_wait(sched_job *j, int timeout_ms, sched_output *out)
{
    pthread_mutex_t *lock = job_lock(j);
    pthread_mutex_lock(lock);
    sched_output *p = &j->pending;
    if (p->len == 0 && p->n_tokens == 0 && p->finish == SCHED_RUNNING && timeout_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->ready, lock, &until);
    }
    /* Swap the buffers: the caller's (emptied) go on collecting. */
    char *text = out->text;
    size_t cap = out->cap;
    sched_token *tokens = out->tokens;
    int32_t cap_tokens = out->cap_tokens;
    bool any = p->len > 0 || p->n_tokens > 0 || p->finish != SCHED_RUNNING;
    *out = *p;
    p->text = text, p->cap = cap, p->len = 0;
    p->tokens = tokens, p->cap_tokens = cap_tokens, p->n_tokens = 0;
    if (p->text)
        p->text[0] = '\0';
    pthread_mutex_unlock(lock);
    return any;
}

void sched_job_release(sched_job *j)
{
    if (!j)
        return;
    pthread_mutex_t *lock = job_lock(j);
    pthread_mutex_lock(lock);
    j->released = true;
    job_unref(j);
    pthread_mutex_unlock(lock);
}

sched_metrics sched_get_metrics(sched *s)
{
    pthread_mutex_lock(&s->lock);
    sched_metrics m = s->metrics;
    m.slots_busy = 0;
    m.kv_used = 0;
    for (int32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].phase != SLOT_IDLE) {
            m.slots_busy++;
            m.kv_used += s->slots[i].n_past;
        }
    m.queued = s->n_queued;
    pthread_mutex_unlock(&s->lock);
    return m;
}
