/*
 * process_one.c - `echonetd --process-one WORKFILE --job JOB`: the child
 * process that runs one study through en_pipeline_process.
 *
 * The daemon opens the file it checked and hands it over as standard
 * input; the child reads WORKFILE only after proving, without following a
 * link, that the name is that same file (spool.c says why).  It reports
 * over stdout in the line protocol of proto.h and exits DM_EXIT_DONE,
 * DM_EXIT_FAILED (the file is bad) or DM_EXIT_RETRY (a transient cause:
 * I/O, a full disk, memory, setup).  Any other end (a signal, a hang
 * killed on the daemon's timeout) is a crash, which the daemon counts
 * against the file's attempts.  Messages name the work file (the job
 * name), never the delivered name, and carry no patient data.
 *
 * Test-only fault hook: with EN_DAEMON_FAULT=crash:TEXT or hang:TEXT in the
 * environment, a file whose bytes contain TEXT crashes (SIGSEGV) or hangs
 * before it is read; with crash-late:TEXT it crashes once its study is
 * known (and has a database row).  The shipped unit does not set it.
 */
#include "config.h"

#include "daemon.h"
#include "en_pipeline.h"
#include "en_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Set by the fault hook: crash once the study is known (it has a row). */
static int crash_late;

static void report(const dm_msg *m)
{
    /* Nothing to do if the daemon is gone: PR_SET_PDEATHSIG ends us. */
    (void)dm_msg_send(stdout, m);
}

static void on_progress(const char *stage, const char *detail, void *ud)
{
    const en_pipeline_result *r = ud;
    dm_msg m = { .kind = DM_MSG_STUDY };
    (void)detail;
    /* After convert the study has its pseudonym (and a database row): tell
     * the daemon, so a crash later can still be recorded against it. */
    if (strcmp(stage, "convert") != 0 && r->conv.pseudonym[0]) {
        snprintf(m.study, sizeof m.study, "%s", r->conv.pseudonym);
        report(&m);
        if (crash_late)
            raise(SIGSEGV);
    }
    m.kind = DM_MSG_STAGE;
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    report(&m);
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
        buf = NULL;
        if (!strncmp(spec, "crash:", 6))
            raise(SIGSEGV);
        if (!strncmp(spec, "crash-late:", 11))
            crash_late = 1;
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

static int fail(const char *stage, const char *study, const en_err *e, int status)
{
    dm_msg m = { .kind = DM_MSG_FAILED };

    snprintf(m.code, sizeof m.code, "%s", en_err_name(e->code));
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    snprintf(m.study, sizeof m.study, "%s", study);
    snprintf(m.text, sizeof m.text, "%s", e->msg);
    report(&m);
    return status;
}

/* Proves that work_file is the file the daemon checked and opened for us
 * (our stdin), so a link or another file put in its place is never read. */
static int verify_input(const char *work_file, int *fd, en_err *err)
{
    struct stat st;
    dm_file_id id;

    if (fstat(0, &st) != 0 || !S_ISREG(st.st_mode))
        return en_err_set(err, EN_EINVAL, "--process-one reads the file the daemon checked "
                          "on its standard input, and none was given");
    dm_file_id_of(&st, &id);
    return dm_spool_open_verified(work_file, &id, fd, err);
}

int dm_process_one(const char *conf_path, const char *work_file, const char *job)
{
    return dm_process_one_warm(conf_path, work_file, job, NULL);
}

int dm_process_one_warm(const char *conf_path, const char *work_file, const char *job,
                        const dm_warm *warm)
{
    double t0 = en_mono_ms();
    en_config cfg;
    en_pipeline p;
    en_pipeline_result r;
    dm_msg m;
    en_err e;
    int rc, fd, use_warm;

    /* Die with the daemon: a study left running by a killed daemon would
     * race the resumed one for the same work file. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return DM_EXIT_RETRY;
    /* A file-size limit fails a write (EFBIG, transient) instead of
     * killing the study as a crash. */
    signal(SIGXFSZ, SIG_IGN);
    if (verify_input(work_file, &fd, &e) != EN_OK)
        return fail("setup", "", &e, DM_EXIT_FAILED);
    en_config_defaults(&cfg);
    if (conf_path[0] && en_config_load(&cfg, conf_path, &e) != EN_OK)
        return fail("setup", "", &e, DM_EXIT_RETRY);
    use_warm = warm && dm_warm_fits(warm, &cfg);
    if ((use_warm ? en_pipeline_open_with(&p, &cfg, warm->seg, warm->ef, &e)
                  : en_pipeline_open(&p, &cfg, &e)) != EN_OK)
        return fail("setup", "", &e, DM_EXIT_RETRY);
    memset(&m, 0, sizeof m);
    m.kind = DM_MSG_READY;
    snprintf(m.stage, sizeof m.stage, "%s", use_warm ? "warm" : "loaded");
    m.ms = en_mono_ms() - t0;
    report(&m);
    fault_hook(work_file);
    rc = en_pipeline_process(&p, work_file, &r, on_progress, &r, &e);
    if (rc != EN_OK && r.conv.pseudonym[0]) {
        /* Only the report failed: the result is committed (the queue call
         * reset the study, so "done" now means done by this run). */
        en_store_ref ref;
        en_err e2;
        if (en_store_find(p.db, r.conv.pseudonym, r.conv.dedup_key[0] ? r.conv.dedup_key : NULL,
                          &ref, &e2) == EN_OK && ref.status == EN_STORE_DONE) {
            memset(&m, 0, sizeof m);
            m.kind = DM_MSG_WARNING;
            snprintf(m.stage, sizeof m.stage, "report");
            snprintf(m.text, sizeof m.text, "%s", e.msg);
            report(&m);
            r.clip_id = ref.id;
            rc = EN_OK;
        }
    }
    close(fd);
    if (rc != EN_OK) {
        en_pipeline_close(&p);
        return fail("process", r.conv.pseudonym, &e,
                    transient(e.code) ? DM_EXIT_RETRY : DM_EXIT_FAILED);
    }
    /* Tie the job name to the study in its event log. */
    en_store_log(p.db, r.clip_id, EN_STORE_EV_INFO, "intake", EN_STORE_NONE, job,
                 r.duplicate ? "duplicate delivered to echonetd: not processed again"
                             : "processed by echonetd", &e);
    memset(&m, 0, sizeof m);
    m.kind = r.duplicate ? DM_MSG_DUPLICATE : DM_MSG_DONE;
    snprintf(m.study, sizeof m.study, "%s", r.conv.pseudonym);
    m.study_id = (long long)r.clip_id;
    m.ef = r.ef_mean;
    m.nbeats = r.nbeats;
    m.ms = r.ms_total;
    snprintf(m.flags, sizeof m.flags, "%s", r.flags_text[0] ? r.flags_text : "none");
    report(&m);
    en_pipeline_close(&p);
    return DM_EXIT_DONE;
}
