/*
 * process_one.c - `echonetd --process-one WORKFILE --job JOB`: the child
 * process that runs one study through en_pipeline_process.
 *
 * It talks to the daemon over stdout, one line per message:
 *   stage NAME                     a pipeline stage started
 *   done PSEUDONYM STUDY_ID EF NBEATS MS FLAGS
 *   duplicate PSEUDONYM STUDY_ID   the instance was already done: skipped
 *   failed CODE_NAME STAGE PSEUDONYM|- MESSAGE
 * and exits DM_EXIT_DONE, DM_EXIT_FAILED (the file is bad) or
 * DM_EXIT_RETRY (a transient cause: I/O, memory, setup).  Any other end
 * (a signal, a hang killed on the daemon's timeout) is a crash, which the
 * daemon counts against the file's attempts.  Messages name the work file
 * (the job name), never the delivered name, and carry no patient data.
 *
 * Test-only fault hook: with EN_DAEMON_FAULT=crash:TEXT or hang:TEXT in the
 * environment, a file whose bytes contain TEXT crashes (SIGSEGV) or hangs.
 * The shipped unit does not set it.
 */
#include "config.h"

#include "daemon.h"
#include "en_pipeline.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void on_progress(const char *stage, const char *detail, void *ud)
{
    const en_pipeline_result *r = ud;
    (void)detail;
    /* After convert the study has its pseudonym (and a database row): tell
     * the daemon, so a crash later can still be recorded against it. */
    if (strcmp(stage, "convert") != 0 && r->conv.pseudonym[0])
        printf("study %s\n", r->conv.pseudonym);
    printf("stage %s\n", stage);
    fflush(stdout);
}

static void fault_hook(const char *path)
{
    const char *spec = getenv("EN_DAEMON_FAULT");
    const char *text;
    char *buf = NULL;
    size_t n = 0, cap = 0, r;
    FILE *f;

    if (!spec || !(text = strchr(spec, ':')) || !text[1])
        return;
    text++;
    if (!(f = fopen(path, "rb")))
        return;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 1 << 20);
            if (!nb)
                break;
            buf = nb;
        }
        if ((r = fread(buf + n, 1, cap - n, f)) == 0)
            break;
        n += r;
    }
    fclose(f);
    if (buf && memmem(buf, n, text, strlen(text))) {
        free(buf);
        if (!strncmp(spec, "crash:", 6))
            raise(SIGSEGV);
        if (!strncmp(spec, "hang:", 5))
            for (;;)
                pause();
    }
    free(buf);
}

static int transient(int code)
{
    return code == EN_EIO || code == EN_ENOMEM || code == EN_EPERM;
}

static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
}

int dm_process_one(const char *conf_path, const char *work_file, const char *job)
{
    en_config cfg;
    en_pipeline p;
    en_pipeline_result r;
    en_err e;
    int rc;

    /* Die with the daemon: a study left running by a killed daemon would
     * race the resumed one for the same work file. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return DM_EXIT_RETRY;
    en_config_defaults(&cfg);
    if (conf_path[0] && en_config_load(&cfg, conf_path, &e) != EN_OK) {
        one_line(e.msg);
        printf("failed %s setup - %s\n", en_err_name(e.code), e.msg);
        return DM_EXIT_RETRY;
    }
    if (en_pipeline_open(&p, &cfg, &e) != EN_OK) {
        one_line(e.msg);
        printf("failed %s setup - %s\n", en_err_name(e.code), e.msg);
        return DM_EXIT_RETRY;
    }
    fault_hook(work_file);
    rc = en_pipeline_process(&p, work_file, &r, on_progress, &r, &e);
    if (rc != EN_OK && r.conv.pseudonym[0]) {
        /* Only the report failed: the result is committed (the queue call
         * reset the study, so "done" now means done by this run). */
        en_store_ref ref;
        en_err e2;
        if (en_store_find(p.db, r.conv.pseudonym, r.conv.dedup_key[0] ? r.conv.dedup_key : NULL,
                          &ref, &e2) == EN_OK && ref.status == EN_STORE_DONE) {
            r.clip_id = ref.id;
            rc = EN_OK;
        }
    }
    if (rc != EN_OK) {
        const char *ps = r.conv.pseudonym[0] ? r.conv.pseudonym : "-";
        one_line(e.msg);
        printf("failed %s process %s %s\n", en_err_name(e.code), ps, e.msg);
        fflush(stdout);
        en_pipeline_close(&p);
        return transient(e.code) ? DM_EXIT_RETRY : DM_EXIT_FAILED;
    }
    /* Tie the job name to the study in its event log. */
    en_store_log(p.db, r.clip_id, EN_STORE_EV_INFO, "intake", EN_STORE_NONE, job,
                 r.duplicate ? "duplicate delivered to echonetd: not processed again"
                             : "processed by echonetd", &e);
    if (r.duplicate) {
        printf("duplicate %s %lld\n", r.conv.pseudonym, (long long)r.clip_id);
        fflush(stdout);
        en_pipeline_close(&p);
        return DM_EXIT_DONE;
    }
    printf("done %s %lld %.2f %d %.0f %s\n", r.conv.pseudonym, (long long)r.clip_id,
           r.nbeats > 0 ? r.ef_mean : NAN, r.nbeats, r.ms_total,
           r.flags_text[0] ? r.flags_text : "none");
    fflush(stdout);
    en_pipeline_close(&p);
    return DM_EXIT_DONE;
}
