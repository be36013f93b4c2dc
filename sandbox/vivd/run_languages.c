/*
 * run_languages.c - language names and cell tags -> vivd jobs (see
 * run_languages.h).
 *
 * Code that runs "from Python" is carried as hex inside a small Python
 * program, so no quoting in the caller's code can break out of it, and it
 * runs in the python policy's jail: warm, and for a session the same jail
 * (and files) as the session's Python cells.
 */
#define _GNU_SOURCE
#include "run_languages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"

/* Python text that evaluates to `s` (hex, so no quoting can break out). */
static char *py_str(const char *s, size_t len) {
    char *hex = xmalloc(len * 2 + 1);
    hex[len * 2] = 0;
    for (size_t i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
    char *r = xasprintf("bytes.fromhex('%s').decode('utf-8', 'surrogateescape')", hex);
    free(hex);
    return r;
}

/* Bash from Python: its output on the job's own stdout/stderr, its status
 * the job's (128+N for a signal, as a shell reports it). */
static char *bash_program(const char *code, size_t len) {
    char *s = py_str(code, len);
    char *r = xasprintf("import subprocess as _viv_sp, sys as _viv_sys\n"
                        "_viv_sys.stdout.flush(); _viv_sys.stderr.flush()\n"
                        "_viv_rc = _viv_sp.run(['/bin/bash', '-c', %s]).returncode\n"
                        "_viv_sys.exit(_viv_rc if _viv_rc >= 0 else 128 - _viv_rc)\n", s);
    free(s);
    return r;
}

static char *sql_program(const char *code, size_t len) {
    char *s = py_str(code, len);
    char *r = xasprintf(
        "import sqlite3, sys\n"
        "con = sqlite3.connect(':memory:', isolation_level=None)\n"
        "buf = ''\n"
        "def show(v):\n    return '' if v is None else str(v)\n"
        "for part in %s.split(';'):\n"
        "    buf += part + ';'\n"
        "    if not sqlite3.complete_statement(buf):\n        continue\n"
        "    stmt, buf = buf, ''\n"
        "    if not stmt.strip(' \\t\\r\\n;'):\n        continue\n"
        "    try:\n"
        "        for row in con.execute(stmt):\n            print('|'.join(show(v) for v in row))\n"
        "    except sqlite3.Error as e:\n"
        "        sys.stdout.flush(); print('Error: %%s' %% e, file=sys.stderr); sys.exit(1)\n"
        "if buf.strip(' \\t\\r\\n;'):\n"
        "    print('Error: incomplete SQL: %%s' %% buf.strip(), file=sys.stderr); sys.exit(1)\n", s);
    free(s);
    return r;
}

/* The compilers' flags: what a lab's C/C++ snippets (competitive
 * programming, small numeric code) expect: optimised, a current standard
 * with GNU extensions, libm linked. */
static const struct {
    const char *name, *source, *compile;
} compiled[] = {
    {"c", "main.c", "exec /usr/bin/gcc -O2 -std=gnu17 -o " RUN_BINARY " main.c -lm"},
    {"cpp", "main.cpp", "exec /usr/bin/g++ -O2 -std=gnu++17 -o " RUN_BINARY " main.cpp -lm"},
};

int run_plan(const char *language, const char *code, size_t len, struct run_plan *p) {
    memset(p, 0, sizeof *p);
    const char *l = language;
    if (!strcmp(l, "python") || !strcmp(l, "python3")) p->tool = "python", p->code = xstrdup(code);
    else if (!strcmp(l, "bash")) p->tool = "python", p->code = bash_program(code, len);
    else if (!strcmp(l, "sql")) p->tool = "python", p->code = sql_program(code, len);
    else if (!strcmp(l, "R") || !strcmp(l, "r")) p->tool = "r", p->code = xstrdup(code);
    for (size_t i = 0; !p->tool && i < sizeof compiled / sizeof compiled[0]; i++)
        if (!strcmp(l, compiled[i].name)) {
            p->tool = "shell";
            p->source = compiled[i].source;
            p->compile_code = xstrdup(compiled[i].compile);
            /* the binary arrives as a file (mode 0644): make it runnable, then
             * become it, so its exit status and signal are the job's */
            p->code = xstrdup("chmod 0700 " RUN_BINARY " && exec ./" RUN_BINARY "\n");
        }
    return p->tool ? 0 : -1;
}

void run_plan_free(struct run_plan *p) {
    free(p->code), free(p->compile_code);
    memset(p, 0, sizeof *p);
}

/* R from the session's Python: the cell goes to a file in the jail's /tmp
 * (an argument has a size limit a long cell would pass) and Rscript runs it
 * in the session's working directory. */
static char *r_cell(const char *rest) {
    char *s = py_str(rest, strlen(rest));
    char *r = xasprintf("import subprocess as _viv_sp, sys as _viv_sys, os as _viv_os, tempfile as _viv_tf\n"
                        "_viv_sys.stdout.flush(); _viv_sys.stderr.flush()\n"
                        "_viv_fd, _viv_path = _viv_tf.mkstemp(suffix='.R')\n"
                        "with _viv_os.fdopen(_viv_fd, 'w', encoding='utf-8', errors='surrogateescape') as _viv_f:\n"
                        "    _viv_f.write(%s)\n"
                        "try:\n"
                        "    _viv_sp.run(['/usr/bin/Rscript', _viv_path], stdin=_viv_sp.DEVNULL)\n"
                        "finally:\n"
                        "    _viv_os.unlink(_viv_path)\n", s);
    free(s);
    return r;
}

static char *bash_cell(const char *rest) {
    char *s = py_str(rest, strlen(rest));
    char *r = xasprintf("import subprocess as _viv_sp, sys as _viv_sys\n"
                        "_viv_sys.stdout.flush(); _viv_sys.stderr.flush()\n"
                        "_viv_sp.run(['/bin/bash', '-c', %s], stdin=_viv_sp.DEVNULL)\n", s);
    free(s);
    return r;
}

char *run_biomni_cell(const char *code) {
    const char *p = code;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    const char *nl = strchr(p, '\n'), *rest = nl ? nl + 1 : p + strlen(p);
    size_t first = (size_t)((nl ? nl : p + strlen(p)) - p);
    while (first && (p[first - 1] == '\r' || p[first - 1] == ' ')) first--;
    if ((first == 6 && !strncmp(p, "#!BASH", 6)) || (first == 5 && !strncmp(p, "#!CLI", 5))) return bash_cell(rest);
    if (first == 3 && !strncmp(p, "#!R", 3)) return r_cell(rest);
    return xstrdup(code);
}
