/* Byte-level BPE, as GPT-2 defined it and llama.cpp runs it; and its
 * SentencePiece-style variant (Gemma 4), described at its table entry.
 *
 * A run of text is first cut into pre-tokens by the model's pre-tokenizer:
 * one or more regexes, each splitting every piece the one before left, into
 * its matches and the text between them (Hugging Face's "Isolated" split).
 * Each pre-token's bytes are then spelled in GPT-2's byte alphabet (every
 * byte a visible character), cut into characters, and the adjacent pair with
 * the lowest merge rank is joined, again and again, until no pair has a rank.
 * The resulting pieces are looked up as tokens.
 *
 * The regexes run in PCRE2 with UTF and UCP, so \p{L}, \p{N} and \s mean
 * what they mean in the Unicode-aware engines the tokenizers were written
 * for; they are JIT-compiled when the platform allows. */
#include "text/bpe.h"

#include "base/error.h"
#include "base/heap.h"
#include "base/hash.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- pre-tokenizers ------------------------------------------------------------- */

enum { PRE_MAX_NAMES = 8, PRE_MAX_REGEXES = 6 };

/* One pre-tokenizer: the tokenizer.ggml.pre names that select it and its
 * regexes, as llama.cpp (src/llama-vocab.cpp) defines them, mostly the
 * models' tokenizer.json patterns. Adding a model family is adding an entry.
 *
 * Of llama.cpp's per-type settings ignore_merges changes token ids and
 * adds_bos the default of tokenizer.ggml.add_bos_token; its clean_spaces (false for qwen2, qwen35, deepseek-llm, smollm, gpt-4o) is a
 * pass of its whole-text detokenizer, which hearth does not have; pieces
 * (vocab_token_to_piece) are the same either way. */
typedef struct pre_tokenizer_def {
    const char *names[PRE_MAX_NAMES];
    const char *regexes[PRE_MAX_REGEXES];
    /* A pre-token that is itself a token is taken whole, without merging
     * (tokenizer.json's "ignore_merges", set by Llama 3). */
    bool ignore_merges;
    /* BOS is added when the file does not say (llama.cpp's default for Llama 3). */
    bool adds_bos;
    /* ... and even when the file says not to (llama.cpp's override for Gemma 4). */
    bool forces_bos;
    /* SentencePiece-style texts instead of GPT-2's byte alphabet (bpe.h). */
    bool spm_text;
} pre_tokenizer_def;

static const pre_tokenizer_def pre_tokenizers[] = {
    {
        /* GPT-2's own pattern (OpenAI's encoder.py, HF's ByteLevel). */
        .names = {"gpt-2", "phi-2"},
        .regexes = {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    },
    {
        /* A file that names no pre-tokenizer: llama.cpp's fallback chain. */
        .names = {"default"},
        .regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+",
                    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
                    "[0-9][0-9][0-9]"},
    },
    {
        /* Llama 3's tokenizer.json: numbers in groups of up to three. Its
         * (?i:'s|...) is spelled out, as llama.cpp does: a caseless 's' in
         * PCRE2 would also match U+017F, the long s. */
        .names = {"llama3", "llama-v3", "llama-bpe"},
        .regexes = {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        .ignore_merges = true,
        .adds_bos = true,
    },
    {
        /* Qwen 2's tokenizer.json: every digit on its own. */
        .names = {"qwen2", "deepseek-r1-qwen"},
        .regexes = {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    },
    {
        /* Qwen 3.5 and 3.6: Qwen 2's, but letter runs take combining marks
         * (\p{M}) along, and a run of punctuation stops at one. */
        .names = {"qwen35"},
        .regexes = {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}|"
                    " ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    },
    {
        /* SmolLM (llama.cpp gives StarCoder, Command R and others the same):
         * every digit alone, then GPT-2's pattern. */
        .names = {"smollm"},
        .regexes = {"\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"},
    },
    {
        /* DeepSeek LLM 7B/67B: newlines alone; a letter run of the listed
         * scripts, or of ASCII and fullwidth punctuation, each with one
         * whitespace before it; trailing whitespace; CJK and Hangul runs;
         * number runs. llama.cpp runs the patterns without \p{} on text whose
         * non-ASCII whitespace it has turned into \v, so a class never matches
         * such a character: its "　-。" (U+3000-3002) is written here from
         * U+3001, and its [一-龥ࠀ-一가-퟿] without the whitespace in U+0800-4E00. */
        .names = {"deepseek-llm"},
        .regexes = {"[\\r\\n]",
                    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-Ⴥ"
                    "Ꭰ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
                    "\\s?[!-/:-~！-／：-～‘-‟、-。]+",
                    "\\s+$",
                    "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}"
                    "\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                    "\\p{N}+"},
    },
    {
        /* Gemma 4 (tokenizer.ggml.model "gemma4", which names no pre; llama.cpp
         * gives granite-embed-multi-311m the same): a SentencePiece-style
         * vocabulary merged by rank. Spaces become U+2581 and the merges run
         * over the whole text, cut only into runs of newlines and runs of
         * anything else; a run of newlines that is itself a token is taken
         * whole. The pieces are raw UTF-8, with <0xNN> byte tokens as the
         * fallback. */
        .names = {"gemma4", "granite-embed-multi-311m"},
        .regexes = {"[^\\n]+|[\\n]+"},
        .adds_bos = true,
        .forces_bos = true,
        .spm_text = true,
    },
    {
        /* GPT-4o's o200k (gpt-oss's o200k_harmony, Llama 4; llama.cpp runs
         * MiniMax M2 with the same pattern): a letter run is an uppercase
         * run then a lowercase one, or the other way round, and may end in a
         * contraction; numbers in groups of up to three; a punctuation run
         * keeps trailing slashes. The tokenizer.json's \p{Lu}... classes are
         * read as llama.cpp rewrites them: upper is a letter not in a-z,
         * lower a letter not in A-Z, so a letter outside ASCII is both, and
         * combining marks are no letters. llama.cpp spells a letter not in
         * a-z ((?=[\p{L}])([^a-z])); the same set as one class, [^\P{L}a-z],
         * lets PCRE2 run a letter run without a backtracking frame per
         * letter (that spelling took 1.3 GB for a million letters, and hit
         * the match limit on a million capitals). */
        .names = {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"},
        .regexes = {"[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]*[^\\P{L}A-Z]+"
                    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
                    "[^\\r\\n\\p{L}\\p{N}]?[^\\P{L}a-z]+[^\\P{L}A-Z]*"
                    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
                    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    },
};

static const pre_tokenizer_def *find_pre_tokenizer(const char *name, size_t len)
{
    for (size_t i = 0; i < COUNT_OF(pre_tokenizers); i++)
        for (size_t k = 0; k < PRE_MAX_NAMES && pre_tokenizers[i].names[k]; k++)
            if (strlen(pre_tokenizers[i].names[k]) == len && memcmp(pre_tokenizers[i].names[k], name, len) == 0)
                return &pre_tokenizers[i];
    return NULL;
}

/* ---- the tokenizer's state ------------------------------------------------------ */

/* A merge "left right" of the file's list, its rank its position there. The
 * texts stay in the GGUF map; right starts one byte after left ends. */
typedef struct merge_entry {
    const char *left;
    uint32_t left_len, right_len;
    int32_t rank; /* -1: empty slot */
} merge_entry;

struct bpe_tokenizer {
    merge_entry *merges; /* open addressing on (left, right) */
    uint64_t merges_mask;
    const pre_tokenizer_def *pre;
    pcre2_code *regexes[PRE_MAX_REGEXES];
    int n_regexes;
    /* GPT-2's alphabet: byte b is spelled byte_chars[b] (1 or 2 bytes of UTF-8). */
    char byte_chars[256][2];
    uint8_t byte_char_len[256];
};

static uint64_t hash_pair(const char *left, size_t left_len, const char *right, size_t right_len)
{
    /* Both halves hashed separately, so a lookup needs no joined copy. */
    uint64_t h = hash_bytes(left, left_len);
    return h ^ (hash_bytes(right, right_len) + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
}

static int32_t find_merge_rank(const bpe_tokenizer *b, const char *left, size_t left_len, const char *right,
                               size_t right_len)
{
    for (uint64_t i = hash_pair(left, left_len, right, right_len) & b->merges_mask; b->merges[i].rank >= 0;
         i = (i + 1) & b->merges_mask) {
        const merge_entry *m = &b->merges[i];
        if (m->left_len == left_len && m->right_len == right_len && memcmp(m->left, left, left_len) == 0 &&
            memcmp(m->left + left_len + 1, right, right_len) == 0)
            return m->rank;
    }
    return -1;
}

/* The same printable set tokenize.c decodes with: those bytes stand for
 * themselves, the other 68 move, in byte order, to U+0100 onwards. */
static void build_byte_alphabet(bpe_tokenizer *b)
{
    uint32_t moved = 0;
    for (uint32_t byte = 0; byte < 256; byte++) {
        bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
        uint32_t cp = printable ? byte : 0x100 + moved++;
        if (cp < 0x80) {
            b->byte_chars[byte][0] = (char)cp;
            b->byte_char_len[byte] = 1;
        } else {
            b->byte_chars[byte][0] = (char)(0xC0 | (cp >> 6));
            b->byte_chars[byte][1] = (char)(0x80 | (cp & 0x3F));
            b->byte_char_len[byte] = 2;
        }
    }
}

/* Ranks are positions in tokenizer.ggml.merges; a pair listed twice keeps
 * its first (best) rank, as llama.cpp's map does. */
static hearth_status load_merges(bpe_tokenizer *b, const gguf_file *f, hearth_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.merges");
    const gguf_array *merges = gguf_get_array(f, "tokenizer.ggml.merges");
    if (!kv)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "key tokenizer.ggml.merges: missing (a byte-level BPE vocabulary needs its merges)");
    if (!merges || merges->elem_type != GGUF_TYPE_STRING)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.merges: %s%s (must be an array of strings)",
                         merges ? "an array of " : "type ",
                         gguf_value_type_name(merges ? merges->elem_type : kv->value.type));
    if (merges->count > INT32_MAX / 4)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.merges: %llu merges (at most %d)",
                         (unsigned long long)merges->count, INT32_MAX / 4);
    uint64_t cap = 16;
    while (cap < 2 * merges->count)
        cap <<= 1;
    b->merges = malloc(cap * sizeof *b->merges);
    if (!b->merges)
        return error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory for %llu merges",
                         (unsigned long long)merges->count);
    b->merges_mask = cap - 1;
    for (uint64_t i = 0; i < cap; i++)
        b->merges[i].rank = -1;
    for (uint64_t rank = 0; rank < merges->count; rank++) {
        gguf_string s = merges->strings[rank];
        /* Split at the first space after the first byte, so a left half that
         * is itself a space character still parses (as llama.cpp splits). */
        const char *space = s.len > 1 ? memchr(s.data + 1, ' ', s.len - 1) : NULL;
        if (!space || s.len > UINT32_MAX)
            return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.merges: merge %llu '%.*s' is not 'left right'",
                             (unsigned long long)rank, (int)(s.len > 64 ? 64 : s.len), s.data);
        size_t left_len = (size_t)(space - s.data), right_len = (size_t)s.len - left_len - 1;
        uint64_t i = hash_pair(s.data, left_len, space + 1, right_len) & b->merges_mask;
        bool listed = false;
        for (; b->merges[i].rank >= 0; i = (i + 1) & b->merges_mask) {
            const merge_entry *m = &b->merges[i];
            if (m->left_len == left_len && m->right_len == right_len && memcmp(m->left, s.data, s.len) == 0) {
                listed = true;
                break;
            }
        }
        if (!listed)
            b->merges[i] = (merge_entry){s.data, (uint32_t)left_len, (uint32_t)right_len, (int32_t)rank};
    }
    return HEARTH_OK;
}

/* llama.cpp's whitespace, as a class body: PCRE2's \s (with UCP) also takes
 * U+180E, which Unicode stopped calling a space in 6.3 and llama.cpp's table
 * leaves out. */
#define LLAMA_WHITESPACE "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* The pattern with each \s and \S spelled as llama.cpp's whitespace, so the
 * table can keep the patterns as llama.cpp writes them. NULL if out of
 * memory. (No pattern has \S inside a class or a ']' first in one.) */
static char *spell_whitespace(const char *pattern)
{
    size_t len = strlen(pattern), grow = sizeof "[^" LLAMA_WHITESPACE "]";
    char *out = malloc(len * grow + 1), *o = out;
    if (!out)
        return NULL;
    bool in_class = false;
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && (p[1] == 's' || p[1] == 'S')) {
            const char *body = LLAMA_WHITESPACE;
            o += in_class ? (size_t)sprintf(o, "%s", body) : (size_t)sprintf(o, "[%s%s]", p[1] == 'S' ? "^" : "", body);
            p++;
            continue;
        }
        if (*p == '\\' && p[1]) {
            *o++ = *p++;
        } else if (*p == '[') {
            in_class = true;
        } else if (*p == ']') {
            in_class = false;
        }
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

static hearth_status compile_pre_tokenizer(bpe_tokenizer *b, const gguf_file *f, const char *fixed,
                                           hearth_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.pre");
    const gguf_string *pre = gguf_get_string(f, "tokenizer.ggml.pre");
    if (!fixed && kv && !pre)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.pre: type %s (must be STRING)",
                         gguf_value_type_name(kv->value.type));
    const char *name = fixed ? fixed : pre ? pre->data : "default";
    size_t name_len = fixed ? strlen(fixed) : pre ? (size_t)pre->len : strlen("default");
    b->pre = find_pre_tokenizer(name, name_len);
    if (!b->pre)
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "key tokenizer.ggml.pre: pre-tokenizer '%.*s' is not known to hearth (known: gpt-2, phi-2, "
                         "default, llama3, llama-v3, llama-bpe, qwen2, deepseek-r1-qwen, qwen35, smollm, deepseek-llm, "
                         "gemma4, granite-embed-multi-311m, gpt-4o, llama4, kanana2, talkie, minimax-m2)",
                         (int)(name_len > 64 ? 64 : name_len), name);
    for (int k = 0; k < PRE_MAX_REGEXES && b->pre->regexes[k]; k++) {
        int code;
        PCRE2_SIZE at;
        char *pattern = spell_whitespace(b->pre->regexes[k]);
        if (!pattern)
            return error_set(err, HEARTH_ERR_NOMEM, "pre-tokenizer: out of memory");
        /* DOLLAR_ENDONLY: a $ matches at the end only, as in llama.cpp's
         * std::regex, never before a final newline. */
        b->regexes[k] = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &code, &at, NULL);
        free(pattern);
        if (!b->regexes[k]) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(code, message, sizeof message);
            return error_set(err, HEARTH_ERR_UNSUPPORTED, "pre-tokenizer '%.*s': regex %d at offset %zu: %s",
                             (int)name_len, name, k, (size_t)at, (const char *)message);
        }
        b->n_regexes = k + 1;
        /* Without JIT (a platform PCRE2 has none for) the interpreter runs
         * the same pattern, only slower. */
        pcre2_jit_compile(b->regexes[k], PCRE2_JIT_COMPLETE);
    }
    return HEARTH_OK;
}

hearth_status bpe_load(const gguf_file *f, const char *pre, bpe_tokenizer **out, hearth_error *err)
{
    *out = NULL;
    bpe_tokenizer *b = calloc(1, sizeof *b);
    if (!b)
        return error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory");
    build_byte_alphabet(b);
    hearth_status st = load_merges(b, f, err);
    if (st == HEARTH_OK)
        st = compile_pre_tokenizer(b, f, pre, err);
    if (st != HEARTH_OK) {
        bpe_free(b);
        return st;
    }
    *out = b;
    return HEARTH_OK;
}

bool bpe_adds_bos_by_default(const bpe_tokenizer *b) { return b->pre->adds_bos; }
bool bpe_forces_bos(const bpe_tokenizer *b) { return b->pre->forces_bos; }
bool bpe_spm_text(const bpe_tokenizer *b) { return b->pre->spm_text; }

void bpe_free(bpe_tokenizer *b)
{
    if (!b)
        return;
    for (int k = 0; k < b->n_regexes; k++)
        pcre2_code_free(b->regexes[k]);
    free(b->merges);
    free(b);
}

/* ---- pre-tokenizing ------------------------------------------------------------- */

typedef struct piece {
    size_t off, len; /* in the fragment */
} piece;

typedef struct piece_list {
    piece *items;
    size_t n, cap;
} piece_list;

static bool pieces_push(piece_list *l, size_t off, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        piece *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown)
            return false;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = (piece){off, len};
    return true;
}

/* Length of the (valid) UTF-8 character a byte starts. */
static size_t utf8_char_length(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static hearth_status regex_error(int code, hearth_error *err)
{
    if (code == PCRE2_ERROR_NOMEMORY)
        return error_set(err, HEARTH_ERR_NOMEM, "pre-tokenizer: out of memory");
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(code, message, sizeof message);
    return error_set(err, HEARTH_ERR_UNSUPPORTED, "pre-tokenizer: regex failed: %s", (const char *)message);
}

/* Cuts one piece into the regex's matches and the text between them. Each
 * match starts from where the last ended, over the whole piece, so
 * lookarounds see the piece's neighbouring characters (and its ends). The
 * text was checked to be UTF-8 once, so PCRE2 need not check it per match. */
static hearth_status split_piece(const pcre2_code *re, pcre2_match_data *md, const char *text, piece p,
                                 piece_list *out, hearth_error *err)
{
    PCRE2_SPTR subject = (PCRE2_SPTR)(text + p.off);
    size_t pos = 0, last = 0;
    while (pos < p.len) {
        int rc = pcre2_match(re, subject, p.len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        /* The JIT's stack is small; the interpreter keeps its state on the heap. */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, subject, p.len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return regex_error(rc, err);
        const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(md);
        size_t start = ovector[0], end = ovector[1];
        if (end <= start) { /* an empty match cuts nothing: look again a character on */
            if (start >= p.len)
                break;
            pos = start + utf8_char_length(subject[start]);
            continue;
        }
        if ((start > last && !pieces_push(out, p.off + last, start - last)) ||
            !pieces_push(out, p.off + start, end - start))
            return error_set(err, HEARTH_ERR_NOMEM, "pre-tokenizer: out of memory");
        last = pos = end;
    }
    if (last < p.len && !pieces_push(out, p.off + last, p.len - last))
        return error_set(err, HEARTH_ERR_NOMEM, "pre-tokenizer: out of memory");
    return HEARTH_OK;
}

/* All the regexes in turn, each over the pieces of the one before. */
static hearth_status pre_tokenize(const bpe_tokenizer *b, const char *text, size_t len, piece_list *result,
                                  hearth_error *err)
{
    piece_list a = {0}, next = {0};
    hearth_status st = HEARTH_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL); /* the whole match only */
    if (!md || !pieces_push(&a, 0, len))
        st = error_set(err, HEARTH_ERR_NOMEM, "pre-tokenizer: out of memory");
    for (int k = 0; st == HEARTH_OK && k < b->n_regexes; k++) {
        next.n = 0;
        for (size_t i = 0; st == HEARTH_OK && i < a.n; i++)
            st = split_piece(b->regexes[k], md, text, a.items[i], &next, err);
        piece_list t = a;
        a = next;
        next = t;
    }
    pcre2_match_data_free(md);
    free(next.items);
    if (st != HEARTH_OK) {
        free(a.items);
        a = (piece_list){0};
    }
    *result = a;
    return st;
}

/* ---- merging ---------------------------------------------------------------------- */

typedef struct bpe_pair {
    int32_t rank;
    int left, right;
    size_t size; /* left.n + right.n when queued: a later size means it is stale */
} bpe_pair;

/* Scratch space reused across the pre-tokens of one call. */
typedef struct bpe_work {
    char *spelled; /* the pre-token in GPT-2's byte alphabet */
    merge_symbol *symbols;
    bpe_pair *heap;
    size_t heap_len, cap; /* cap: bytes of spelled text the arrays hold */
} bpe_work;

static bool work_reserve(bpe_work *w, size_t spelled_len)
{
    if (spelled_len <= w->cap)
        return true;
    size_t cap = spelled_len < 256 ? 256 : spelled_len;
    /* One symbol per character at most; each merge queues at most two pairs
     * beyond the n - 1 initial ones. */
    char *spelled = realloc(w->spelled, cap);
    if (spelled)
        w->spelled = spelled;
    merge_symbol *symbols = realloc(w->symbols, cap * sizeof *symbols);
    if (symbols)
        w->symbols = symbols;
    bpe_pair *heap = realloc(w->heap, 3 * cap * sizeof *heap);
    if (heap)
        w->heap = heap;
    if (!spelled || !symbols || !heap)
        return false;
    w->cap = cap;
    return true;
}

/* Min-heap order: lowest rank first, then the leftmost pair (llama.cpp's). */
static bool pair_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

HEAP_DEFINE(merge_heap, bpe_pair, pair_before)

static void queue_pair(const bpe_tokenizer *b, bpe_work *w, int left, int right)
{
    if (left < 0 || right < 0)
        return;
    const merge_symbol *l = &w->symbols[left], *r = &w->symbols[right];
    int32_t rank = find_merge_rank(b, l->text, l->n, r->text, r->n);
    if (rank >= 0)
        merge_heap_push(w->heap, &w->heap_len, (bpe_pair){rank, left, right, l->n + r->n});
}

/* A piece that is no token is written as the tokens of its single bytes,
 * those that exist (llama.cpp's fallback): in GPT-2's alphabet each byte's
 * character (GPT-2 vocabularies have them all, so only a broken vocabulary
 * gets here), for SentencePiece-style texts the <0xNN> tokens. */
static void emit_piece(const vocab *v, const char *text, size_t n, token_sink *sink)
{
    int32_t id = vocab_find(v, text, n);
    if (id != VOCAB_NO_TOKEN) {
        sink_push(sink, id);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t byte_id = v->spm_text ? v->byte_tokens[(unsigned char)text[i]] : vocab_find(v, text + i, 1);
        if (byte_id != VOCAB_NO_TOKEN)
            sink_push(sink, byte_id);
    }
}

/* Only newlines (the Gemma 4 rule below). */
static bool all_newlines(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] != '\n')
            return false;
    return true;
}

static bool merge_pre_token(const vocab *v, const char *text, size_t len, bpe_work *w, token_sink *sink)
{
    const bpe_tokenizer *b = v->bpe;
    if (!work_reserve(w, 2 * len)) /* every byte spells as at most 2 */
        return false;
    size_t n = 0;
    if (b->pre->spm_text) {
        memcpy(w->spelled, text, len);
        n = len;
    } else {
        for (size_t i = 0; i < len; i++) {
            unsigned char byte = (unsigned char)text[i];
            memcpy(w->spelled + n, b->byte_chars[byte], b->byte_char_len[byte]);
            n += b->byte_char_len[byte];
        }
    }
    /* A pre-token that is a token is taken whole: always with ignore_merges,
     * and for Gemma 4 a run of newlines (llama.cpp's fix for its vocabulary,
     * whose newline runs are tokens the merges do not reach). */
    bool whole = b->pre->ignore_merges || (b->pre->spm_text && all_newlines(w->spelled, n));
    if (whole && vocab_find(v, w->spelled, n) != VOCAB_NO_TOKEN) {
        emit_piece(v, w->spelled, n, sink);
        return true;
    }
    int n_symbols = 0;
    for (size_t off = 0; off < n;) {
        size_t char_len = utf8_char_length((unsigned char)w->spelled[off]);
        w->symbols[n_symbols] = (merge_symbol){w->spelled + off, char_len, n_symbols - 1,
                                             off + char_len == n ? -1 : n_symbols + 1};
        n_symbols++;
        off += char_len;
    }
    w->heap_len = 0;
    for (int i = 1; i < n_symbols; i++)
        queue_pair(b, w, i - 1, i);
    while (w->heap_len > 0) {
        bpe_pair p = merge_heap_pop(w->heap, &w->heap_len);
        merge_symbol *left = &w->symbols[p.left], *right = &w->symbols[p.right];
        /* A pair is stale once either side has merged into something else. */
        if (left->n == 0 || right->n == 0 || left->n + right->n != p.size)
            continue;
        left->n += right->n;
        right->n = 0;
        left->next = right->next;
        if (right->next >= 0)
            w->symbols[right->next].prev = p.left;
        queue_pair(b, w, left->prev, p.left);
        queue_pair(b, w, p.left, left->next);
    }
    for (int i = 0; n_symbols > 0 && i != -1; i = w->symbols[i].next)
        emit_piece(v, w->symbols[i].text, w->symbols[i].n, sink);
    return true;
}

hearth_status bpe_tokenize_fragment(const vocab *v, const char *text, size_t len, token_sink *sink,
                                    hearth_error *err)
{
    if (len == 0)
        return HEARTH_OK;
    /* SentencePiece-style texts: spaces are U+2581 before anything is cut. */
    char *escaped = NULL;
    if (v->bpe->pre->spm_text) {
        escaped = spm_escape_spaces(text, len, false, &len);
        if (!escaped)
            return error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        text = escaped;
    }
    piece_list pieces;
    hearth_status st = pre_tokenize(v->bpe, text, len, &pieces, err);
    bpe_work work = {0};
    for (size_t i = 0; st == HEARTH_OK && i < pieces.n; i++)
        if (pieces.items[i].len > INT_MAX / 4) /* symbols are indexed by int */
            st = error_set(err, HEARTH_ERR_ARG, "tokenizer: a pre-token of %zu bytes is longer than %d",
                           pieces.items[i].len, INT_MAX / 4);
        else if (!merge_pre_token(v, text + pieces.items[i].off, pieces.items[i].len, &work, sink))
            st = error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory for a pre-token of %zu bytes",
                           pieces.items[i].len);
    free(work.spelled);
    free(work.symbols);
    free(work.heap);
    free(pieces.items);
    free(escaped);
    return st;
}
