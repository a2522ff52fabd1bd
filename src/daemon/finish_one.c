/*
 * finish_one.c - `echonetd --finish-study PSEUDONYM`: the child process
 * that computes one study's result over its clips (a new version when they
 * changed since the last one) and draws its report, through
 * en_pipeline_finish_study.  It runs apart from the daemon for the same
 * reason a clip does: the report re-segments key frames and draws a page,
 * and a crash or hang there must cost this try only.  The result is one
 * database transaction that also clears the study's stale mark, so a try
 * killed at any point leaves the study stale and it is simply computed
 * again; one that completed is never counted twice.
 *
 * It reports over stdout in proto.h's protocol (`result`, or `failed`)
 * and exits DM_EXIT_DONE, DM_EXIT_FAILED or DM_EXIT_RETRY; the daemon
 * (studies.c) retries every failure with a back-off either way.
 *
 * Test-only fault hook: with EN_DAEMON_FAULT=crash-finish:PATH, a try
 * crashes (SIGABRT, which the sanitizers let through without a report)
 * when PATH does not exist yet, after creating it: the first try after
 * the test arms it crashes, the next one runs.
 */
#include "config.h"

#include "daemon.h"
#include "en_pipeline.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void fault_hook(void)
{
    const char *spec = getenv("EN_DAEMON_FAULT");
    int fd;

    if (!spec || strncmp(spec, "crash-finish:", 13) || !spec[13])
        return;
    if ((fd = open(spec + 13, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return;
    close(fd);
    abort();
}

static int fail(const char *study, const en_err *e, int status)
{
    dm_msg m = { .kind = DM_MSG_FAILED };

    snprintf(m.code, sizeof m.code, "%s", en_err_name(e->code));
    snprintf(m.stage, sizeof m.stage, "study");
    snprintf(m.study, sizeof m.study, "%s", study);
    snprintf(m.text, sizeof m.text, "%s", e->msg);
    (void)dm_msg_send(stdout, &m);
    return status;
}

int dm_finish_one(const char *conf_path, const char *pseudonym)
{
    en_config cfg;
    en_pipeline p;
    en_pipeline_study st;
    dm_msg m;
    en_err e;
    int rc;

    /* Die with the daemon, like a clip's process. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return DM_EXIT_RETRY;
    signal(SIGXFSZ, SIG_IGN);
    en_config_defaults(&cfg);
    if (conf_path[0] && en_config_load(&cfg, conf_path, &e) != EN_OK)
        return fail(pseudonym, &e, DM_EXIT_RETRY);
    /* The key frames need the segmentation model; the EF model is not
     * loaded at all. */
    if (en_pipeline_open_finish(&p, &cfg, &e) != EN_OK)
        return fail(pseudonym, &e, DM_EXIT_RETRY);
    fault_hook();
    rc = en_pipeline_finish_study(&p, pseudonym, 0, &st, &e);
    en_pipeline_close(&p);
    if (rc != EN_OK && st.version == 0)
        return fail(pseudonym, &e, rc == EN_EIO || rc == EN_ENOMEM || rc == EN_EPERM
                    ? DM_EXIT_RETRY : DM_EXIT_FAILED);
    if (rc != EN_OK) {
        /* The result is stored; only its page failed (recorded as a
         * warning event by the pipeline). */
        memset(&m, 0, sizeof m);
        m.kind = DM_MSG_WARNING;
        snprintf(m.stage, sizeof m.stage, "report");
        snprintf(m.text, sizeof m.text, "%s", e.msg);
        (void)dm_msg_send(stdout, &m);
    }
    memset(&m, 0, sizeof m);
    m.kind = DM_MSG_RESULT;
    snprintf(m.study, sizeof m.study, "%s", pseudonym);
    m.version = st.version;
    m.changed = st.changed;
    m.ef = st.res.ef_mean;
    m.nbeats = st.res.beats;
    m.clips_usable = st.res.clips_usable;
    m.clips_total = st.res.clips_total;
    snprintf(m.flags, sizeof m.flags, "%s", st.res.flags_text[0] ? st.res.flags_text : "none");
    for (char *c = m.flags; *c; c++)
        if (*c == ' ')      /* one word in the protocol */
            *c = '_';
    (void)dm_msg_send(stdout, &m);
    return DM_EXIT_DONE;
}
