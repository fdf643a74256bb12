#include "base/paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

bool paths_make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, 0755);
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode);
}
