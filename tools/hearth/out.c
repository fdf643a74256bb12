#include "cli.h"

#include "base/utf8.h"

void out_json_string(FILE *out, const char *s, uint64_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    fputc('"', out);
    for (uint64_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) { /* not UTF-8: JSON cannot carry it, say so visibly */
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        switch (cp) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (cp < 0x20 || cp == 0x7F)
                fprintf(out, "\\u%04x", (unsigned)cp);
            else
                fwrite(p + i, 1, n, out);
        }
        i += n;
    }
    fputc('"', out);
}

void out_text_escaped(FILE *out, const char *s, uint64_t len, uint64_t max_bytes)
{
    const uint8_t *p = (const uint8_t *)s;
    uint64_t shown = len < max_bytes ? len : max_bytes;
    for (uint64_t i = 0; i < shown;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0 || i + n > shown) {
            if (n == 0)
                fprintf(out, "\\x%02x", p[i]);
            i += n ? n : 1;
            continue;
        }
        if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '"' || cp == '\\')
            fprintf(out, "\\%c", (char)cp);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp < 0x20 || cp == 0x7F)
            fprintf(out, "\\x%02x", (unsigned)cp);
        else
            fwrite(p + i, 1, n, out);
        i += n;
    }
    if (shown < len)
        fputs("...", out);
}

void out_format_bytes(char *buf, size_t size, uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, size, "%.2f %s", v, units[u]);
}

void out_format_count(char *buf, size_t size, uint64_t count)
{
    if (count >= 1000000000ull)
        snprintf(buf, size, "%.2f B", (double)count / 1e9);
    else if (count >= 1000000ull)
        snprintf(buf, size, "%.2f M", (double)count / 1e6);
    else if (count >= 1000ull)
        snprintf(buf, size, "%.2f K", (double)count / 1e3);
    else
        snprintf(buf, size, "%llu", (unsigned long long)count);
}
