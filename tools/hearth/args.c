#include "cli.h"

#include "base/paths.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *command, const char *usage, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "hearth %s: ", command);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n\n%s", usage);
    va_end(args);
    return CLI_EXIT_USAGE;
}

bool cli_is_option(const char *arg, const char *short_name, const char *long_name)
{
    return (short_name && strcmp(arg, short_name) == 0) || (long_name && strcmp(arg, long_name) == 0);
}

bool cli_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *cli_default_model(char *buf, size_t cap, const char *command)
{
    if (!paths_default_model(buf, cap)) {
        fprintf(stderr, "hearth %s: no -m given and no default model path (HOME unset)\n", command);
        return NULL;
    }
    return buf;
}
