/*
 * How the fake GPU libraries of tests/support (nvml_stub.c, amd_smi_stub.c) find and
 * read their configuration file, shared so that both read it the same way: where the
 * file is, line length and endings, blank and comment lines, fields, and the notes on
 * stderr for lines they skip.
 *
 * A stub defines _GNU_SOURCE before its first #include, and before including this file:
 *   STUB_NAME        its name: the prefix of its notes on stderr, and of the file
 *                    STUB_NAME.conf it reads from the directory holding the library
 *   STUB_CONFIG_ENV  the environment variable that names another file to read
 * Everything here is static: each library gets its own copy.
 */

#ifndef STUB_CONFIG_H
#define STUB_CONFIG_H

#if !defined(STUB_NAME) || !defined(STUB_CONFIG_ENV)
#error "define STUB_NAME and STUB_CONFIG_ENV before including stub_config.h"
#endif

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before the first #include: config_path needs dladdr"
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines are at most 510 characters, besides the line ending. */
#define LINE_LEN 512

static void note(const char *path, unsigned line, const char *why)
{
    fprintf(stderr, STUB_NAME ": %s:%u: %s; line skipped\n", path, line, why);
}

/* Strict unsigned parse: the whole token must be digits and fit. */
static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0';
}

static int parse_u32(const char *s, unsigned int *out)
{
    unsigned long long v;
    if (!parse_u64(s, &v) || v > UINT_MAX)
        return 0;
    *out = (unsigned int)v;
    return 1;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    if (src == NULL || strlen(src) >= cap)
        return 0;
    strcpy(dst, src);
    return 1;
}

/* Cuts the next blank-separated word out of *cursor; NULL when none is left. */
static char *next_word(char **cursor)
{
    char *s = *cursor + strspn(*cursor, " \t");
    size_t n = strcspn(s, " \t");
    if (n == 0)
        return NULL;
    *cursor = s + n;
    if (s[n] != '\0') {
        s[n] = '\0';
        *cursor = s + n + 1;
    }
    return s;
}

/* The rest of the line without surrounding blanks; NULL when empty. */
static char *rest_of_line(char **cursor)
{
    char *s = *cursor + strspn(*cursor, " \t");
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    *cursor = s + n;
    return n > 0 ? s : NULL;
}

/* Writes the config path into buf; returns 0 if there is none to try. */
static int config_path(char *buf, size_t cap)
{
    const char *env = getenv(STUB_CONFIG_ENV);
    Dl_info info;
    const char *slash;
    int n;

    if (env != NULL && env[0] != '\0')
        return copy_field(buf, cap, env);
    /* The directory of this library: each test can use its own copy and file. */
    if (dladdr((void *)&config_path, &info) == 0 || info.dli_fname == NULL)
        return 0;
    slash = strrchr(info.dli_fname, '/');
    if (slash == NULL)
        n = snprintf(buf, cap, STUB_NAME ".conf");
    else
        n = snprintf(buf, cap, "%.*s/" STUB_NAME ".conf", (int)(slash - info.dli_fname),
                     info.dli_fname);
    return n > 0 && (size_t)n < cap;
}

/*
 * Hands each line of the configuration file to parse_line, without its line ending
 * (LF or CRLF), except blank lines and those starting with '#'; a line too long is
 * skipped with a note. Returns 0, having said why on stderr, when there is no file.
 */
static int read_config(void (*parse_line)(char *line, const char *path, unsigned lineno))
{
    char path[PATH_MAX];
    char line[LINE_LEN];
    unsigned lineno = 0;
    FILE *f;

    if (!config_path(path, sizeof path)) {
        fprintf(stderr, STUB_NAME ": no configuration: set " STUB_CONFIG_ENV "\n");
        return 0;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, STUB_NAME ": cannot open %s: %s\n", path, strerror(errno));
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strlen(line);
        char first;
        lineno++;
        if (n > 0 && line[n - 1] == '\n') {
            line[--n] = '\0';
        } else if (!feof(f)) {
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            note(path, lineno, "line too long");
            continue;
        }
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        first = line[strspn(line, " \t")];
        if (first != '\0' && first != '#')
            parse_line(line, path, lineno);
    }
    fclose(f);
    return 1;
}

#endif /* STUB_CONFIG_H */
