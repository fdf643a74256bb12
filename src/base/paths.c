#include "base/paths.h"

#include <stdio.h>
#include <stdlib.h>

bool paths_cache_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(buf, cap, "%s/hearth", xdg);
    else if (home && *home)
        n = snprintf(buf, cap, "%s/.cache/hearth", home);
    else
        return false;
    return n > 0 && (size_t)n < cap;
}

bool paths_models_dir(char *buf, size_t cap)
{
    char dir[4096];
    if (!paths_cache_dir(dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/models", dir);
    return n > 0 && (size_t)n < cap;
}

bool paths_default_model(char *buf, size_t cap)
{
    const char *env = getenv("HEARTH_MODEL");
    if (env && *env) {
        int n = snprintf(buf, cap, "%s", env);
        return n > 0 && (size_t)n < cap;
    }
    char dir[4096];
    if (!paths_models_dir(dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/%s", dir, HEARTH_DEFAULT_MODEL_FILE);
    return n > 0 && (size_t)n < cap;
}
