/* vivd_job_files.c - part of vivd_tests.c (one translation unit, its harness
 * and helpers): stdin, files and fetch_files through vivd, and the names they may not use. */

/* ------------------------------------------------------- stdin, files, fetch */

/* One exec with io through the C client; the response (caller frees). */
static struct viv_response *exec_io(struct viv_client *c, const char *tool, const char *code,
                                    const struct viv_exec_io *io) {
    long h = viv_submit_exec_io(c, tool, code, strlen(code), 10000, io);
    return viv_wait(c, h, 30000);
}

static const char *fetched_b64(const cJSON *resp, const char *name) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "files"), name));
}

static const char *fetch_error(const cJSON *resp, const char *name) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "fetch_errors"), name));
}

/* stdin reaches the job as its fd 0 (sealed: the job cannot rewrite what it
 * was given); files land under /work, subdirectories made; a fetched file
 * comes back byte for byte, NULs included. */
static void test_exec_stdin_files_fetch(void) {
    START(d, NULL);
    CONNECT(c, d);
    static const char bin[] = {'a', 0, 'b', (char)0xff};
    struct job_file files[] = {{"in/deep/data.bin", (char *)bin, sizeof bin}};
    char *fetch[] = {"out.bin"};
    struct viv_exec_io io = {"line1\nline2\n", 12, files, 1, fetch, 1};
    const char *code = "import os, sys\n"
                       "print(sys.stdin.read().split())\n"
                       "try:\n    os.write(0, b'x'); print('stdin writable')\nexcept OSError: print('stdin sealed')\n"
                       "p = os.path.realpath('in/deep/data.bin'); print(p)\n"
                       "open('out.bin', 'wb').write(open(p, 'rb').read()[::-1])\n";
    struct viv_response *r = exec_io(c, "python", code, &io);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed: %s", r ? cJSON_PrintUnformatted(r->json) : "none");
    CHECK(strcmp(r->out, "['line1', 'line2']\nstdin sealed\n/work/in/deep/data.bin\n") == 0, "stdout: %s", r->out);
    const char *b64 = fetched_b64(r->json, "out.bin");
    size_t n = 0;
    char *got = b64 ? base64_decode(b64, strlen(b64), &n) : NULL;
    CHECK(got && n == 4 && got[0] == (char)0xff && got[1] == 'b' && got[2] == 0 && got[3] == 'a', "fetched: %s", b64 ? b64 : "none");
    free(got);
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The attack: file names that point out of the job directory, on the way
 * in and on the way back. Each is refused before anything runs, with a
 * bad_request naming the rule; the daemon lives on. */
static void test_files_cannot_name_outside_job_dir(void) {
    START(d, NULL);
    const char *bad[] = {
        "{\"id\":1,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"../x\":\"eA==\"}}\n",
        "{\"id\":2,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"/tmp/x\":\"eA==\"}}\n",
        "{\"id\":3,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"a/../../x\":\"eA==\"}}\n",
        "{\"id\":4,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"\":\"eA==\"}}\n",
        "{\"id\":5,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":[\"../../etc/passwd\"]}\n",
        "{\"id\":6,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":[\"/etc/passwd\"]}\n",
        "{\"id\":7,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"a\":\"not base64!\"}}\n",
        "{\"id\":8,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"main.py\":\"eA==\"}}\n",
        "{\"id\":9,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":[\"a\"]}\n",
        "{\"id\":10,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":\"a\"}\n",
        "{\"id\":11,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"stdin\":5}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int fd = try_connect(d.sock);
        CHECK(fd >= 0, "connect");
        char *line = raw_roundtrip(fd, bad[i], strlen(bad[i]));
        close(fd);
        CHECK(line && strstr(line, "\"code\":\"bad_request\""), "request %zu not refused: %s", i + 1, line ? line : "");
    }
    CONNECT(c, d);
    long h = viv_submit_op(c, "ping");
    struct viv_response *r = viv_wait(c, h, 5000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "pong")), "vivd not healthy afterwards");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The attack: the job plants symlinks (to a file, to a directory), a
 * FIFO, a directory and a hard link where the caller will fetch, and leaves
 * a process that keeps swapping a fetched name between a file and a symlink
 * to /etc/passwd. Nothing outside /work comes back: the symlinks are refused
 * as symlinks, the FIFO does not hang the fetch, the swapper is dead before
 * the fetch walks the path, and the hard link could not be made (/work is
 * its own filesystem). */
static void test_fetch_never_follows_out_of_job_dir(void) {
    START(d, NULL);
    CONNECT(c, d);
    char *fetch[] = {"link", "dirlink/passwd", "fifo", "adir", "hard", "race", "sub/inner"};
    struct viv_exec_io io = {NULL, 0, NULL, 0, fetch, 7};
    const char *code = "import os, time\n"
                       "os.symlink('/etc/passwd', 'link'); os.symlink('/etc', 'dirlink'); os.mkfifo('fifo'); os.mkdir('adir')\n"
                       "os.symlink('/etc', 'sub')\n"
                       "try:\n    os.link('/etc/passwd', 'hard')\nexcept OSError as e: print('link', e.errno)\n"
                       "open('race', 'w').write('plain')\n"
                       "if os.fork() == 0:\n"
                       "    os.setsid()\n"
                       "    while True:\n"
                       "        try:\n"
                       "            os.rename('race', 'race.tmp'); os.symlink('/etc/passwd', 'race'); os.unlink('race');\n"
                       "            os.rename('race.tmp', 'race'); os.symlink('/etc/passwd', 'race.new'); os.replace('race.new', 'race')\n"
                       "        except OSError: pass\n"
                       "time.sleep(0.2)\n";
    struct viv_response *r = exec_io(c, "python", code, &io);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed: %s", r ? cJSON_PrintUnformatted(r->json) : "none");
    const char *sym[] = {"link", "dirlink/passwd", "sub/inner"};
    for (int i = 0; i < 3; i++) {
        CHECK(!fetched_b64(r->json, sym[i]), "%s was fetched through a symlink", sym[i]);
        CHECK(fetch_error(r->json, sym[i]) && strstr(fetch_error(r->json, sym[i]), "symlink"), "%s: %s", sym[i],
              fetch_error(r->json, sym[i]) ? fetch_error(r->json, sym[i]) : "no error");
    }
    CHECK(fetch_error(r->json, "fifo") && fetch_error(r->json, "adir") && fetch_error(r->json, "hard"),
          "fifo, directory or missing hard link fetched: %s", cJSON_PrintUnformatted(r->json));
    const char *race = fetched_b64(r->json, "race");
    if (race) {
        size_t n;
        char *got = base64_decode(race, strlen(race), &n);
        CHECK(got && strcmp(got, "plain") == 0, "race fetched as something else than the job's file: %s", got ? got : "?");
        free(got);
        NOTE("the swapper was stopped with 'race' a plain file: its own content came back");
    } else {
        CHECK(fetch_error(r->json, "race"), "race neither fetched nor refused");
        NOTE("the swapper was stopped with 'race' a symlink or absent: refused (%s)", fetch_error(r->json, "race"));
    }
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Past the policy's files_bytes: input refused whole before the job runs,
 * a fetched file too big not sent (the rest still is); more than
 * JOB_FILES_MAX names refused. */
static void test_files_held_to_policy_caps(void) {
    START(d, "--max-line-bytes", "67108864", NULL); /* the line may carry 16 MiB as base64 */
    CONNECT(c, d);
    size_t big = (16u << 20) + 1; /* python.json keeps the default files_bytes, 16 MiB */
    struct job_file files[] = {{"big", xcalloc(1, big), big}};
    struct viv_exec_io io = {NULL, 0, files, 1, NULL, 0};
    struct viv_response *r = exec_io(c, "python", "print(1)", &io);
    free(files[0].data);
    CHECK(r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")) && strcmp(jerr_code(r->json), "bad_request") == 0,
          "oversized files not refused");
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")), "files_bytes"),
          "the error does not name files_bytes");
    viv_response_free(r);
    char *fetch[] = {"huge", "small"};
    struct viv_exec_io io2 = {NULL, 0, NULL, 0, fetch, 2};
    r = exec_io(c, "python", "open('huge','wb').write(b'x' * (17 << 20)); open('small','w').write('ok')", &io2);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed");
    CHECK(!fetched_b64(r->json, "huge") && fetch_error(r->json, "huge") && strstr(fetch_error(r->json, "huge"), "files_bytes"),
          "a file past files_bytes was fetched");
    CHECK(fetched_b64(r->json, "small") && strcmp(fetched_b64(r->json, "small"), "b2s=") == 0, "small file not fetched");
    viv_response_free(r);
    char *many[JOB_FILES_MAX + 1];
    for (int i = 0; i <= JOB_FILES_MAX; i++) many[i] = "f";
    struct viv_exec_io io3 = {NULL, 0, NULL, 0, many, JOB_FILES_MAX + 1};
    r = exec_io(c, "python", "1", &io3);
    CHECK(r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "too many fetch_files accepted");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}
