/* Where hearth keeps things on the user's machine. */
#ifndef HEARTH_BASE_PATHS_H
#define HEARTH_BASE_PATHS_H

#include <stdbool.h>
#include <stddef.h>

#define HEARTH_DEFAULT_MODEL_FILE "gemma-3-270m-q4_k_m.gguf"

/* $XDG_CACHE_HOME/hearth, or ~/.cache/hearth: what hearth keeps that it
 * could make again (models, this machine's measured limits). False when
 * neither variable is set or the path does not fit. */
bool paths_cache_dir(char *buf, size_t cap);

/* $XDG_CACHE_HOME/hearth/models, or ~/.cache/hearth/models. False when
 * neither variable is set or the path does not fit. */
bool paths_models_dir(char *buf, size_t cap);

/* The default model: $HEARTH_MODEL if set, else the models dir's
 * HEARTH_DEFAULT_MODEL_FILE (which scripts/setup.sh puts there). */
bool paths_default_model(char *buf, size_t cap);

/* mkdir -p: the cache dir's parents may not exist yet ($XDG_CACHE_HOME
 * itself, on a fresh account). False when path is not a directory after. */
bool paths_make_dirs(const char *path);

#endif
