/*
 * test-outbox.c - the send queue's rules (en_outbox.h), apart from any
 * network: a version is enqueued once; the states an attempt moves
 * through; what a crash between them leaves (a row in "sending", due again
 * after reopening); superseded older versions; the back-off's doubling and
 * cap; echonetctl send's requeue; counts and listing; bad keys refused.
 */
#include "en_outbox.h"

#include "tst.h"

#include <string.h>
#include <sys/stat.h>

#define PA "00112233aabbccdd"
#define PB "ffeeddcc44332211"

static int count_cb(const en_outbox_item *it, void *ud)
{
    (void)it;
    ++*(int *)ud;
    return 0;
}

int main(void)
{
    char dir[512], path[600];
    en_outbox *ob;
    en_outbox_item it;
    int64_t c[EN_OUTBOX_NSTATES], t = 1000000;
    struct stat st;
    en_err e;
    int n;

    tst_scratch_dir(dir, sizeof dir, "outbox");
    snprintf(path, sizeof path, "%s/outbox.db", dir);
    CHECK(en_outbox_open(path, &ob, &e) == EN_OK);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(en_outbox_since(ob) > 0);

    /* Enqueued once, whatever the state. */
    CHECK(en_outbox_enqueue(ob, PA, 1, t, &e) == 1);
    CHECK(en_outbox_enqueue(ob, PA, 1, t + 5, &e) == 0);
    CHECK(en_outbox_enqueue(ob, "NOT-HEX!", 1, t, &e) == EN_EINVAL);
    CHECK(en_outbox_enqueue(ob, PA, 0, t, &e) == EN_EINVAL);

    /* Not due before its time; due at it. */
    CHECK(en_outbox_next(ob, t - 1, &it, &e) == EN_ENOTFOUND);
    CHECK(en_outbox_next(ob, t, &it, &e) == EN_OK);
    CHECK(!strcmp(it.pseudonym, PA) && it.version == 1 && it.state == EN_OUTBOX_PENDING &&
          it.attempts == 0 && it.enqueued_ms == t);

    /* An attempt that fails: pending again, later, with its error. */
    CHECK(en_outbox_begin(ob, PA, 1, t + 10, &e) == EN_OK);
    CHECK(en_outbox_retry(ob, PA, 1, t + 30010, "PACS down", &e) == EN_OK);
    CHECK(en_outbox_next(ob, t + 30000, &it, &e) == EN_ENOTFOUND);
    CHECK(en_outbox_next(ob, t + 30010, &it, &e) == EN_OK && it.attempts == 1 &&
          !strcmp(it.last_error, "PACS down") && it.last_try_ms == t + 10);
    /* A retry of a row not in "sending" is refused (no double outcome). */
    CHECK(en_outbox_retry(ob, PA, 1, t, "x", &e) == EN_ENOTFOUND);

    /* A crash during the second attempt: "sending" survives a reopen and
     * is due at once. */
    CHECK(en_outbox_begin(ob, PA, 1, t + 30020, &e) == EN_OK);
    en_outbox_close(ob);
    CHECK(en_outbox_open(path, &ob, &e) == EN_OK);
    CHECK(en_outbox_next(ob, t + 30030, &it, &e) == EN_OK && it.state == EN_OUTBOX_SENDING &&
          it.attempts == 2);
    CHECK(en_outbox_begin(ob, PA, 1, t + 30040, &e) == EN_OK);
    CHECK(en_outbox_sent(ob, PA, 1, t + 30050, &e) == EN_OK);
    CHECK(en_outbox_next(ob, t + 999999999, &it, &e) == EN_ENOTFOUND);
    /* Sent is final: not enqueued again, no second outcome. */
    CHECK(en_outbox_enqueue(ob, PA, 1, t + 40000, &e) == 0);
    CHECK(en_outbox_sent(ob, PA, 1, t + 40000, &e) == EN_ENOTFOUND);
    CHECK(en_outbox_begin(ob, PA, 1, t + 40000, &e) == EN_ENOTFOUND);

    /* A newer version supersedes the unsent older one, not the sent one. */
    CHECK(en_outbox_enqueue(ob, PB, 1, t, &e) == 1);
    CHECK(en_outbox_enqueue(ob, PB, 2, t + 1, &e) == 1);
    CHECK(en_outbox_enqueue(ob, PA, 2, t + 1, &e) == 1);
    CHECK(en_outbox_counts(ob, c, &e) == EN_OK);
    CHECKF(c[EN_OUTBOX_PENDING] == 2 && c[EN_OUTBOX_SENT] == 1 && c[EN_OUTBOX_SUPERSEDED] == 1,
           "pending %lld sent %lld superseded %lld", (long long)c[EN_OUTBOX_PENDING],
           (long long)c[EN_OUTBOX_SENT], (long long)c[EN_OUTBOX_SUPERSEDED]);

    /* Given up, then queued again by hand: pending, attempts and clock reset. */
    CHECK(en_outbox_begin(ob, PB, 2, t + 2, &e) == EN_OK);
    CHECK(en_outbox_finish(ob, PB, 2, EN_OUTBOX_FAILED, t + 3, "gave up", &e) == EN_OK);
    CHECK(en_outbox_finish(ob, PB, 2, EN_OUTBOX_PENDING, t + 3, "", &e) == EN_EINVAL);
    n = 0;
    CHECK(en_outbox_list(ob, EN_OUTBOX_FAILED, count_cb, &n, &e) == 0 && n == 1);
    CHECK(en_outbox_requeue(ob, PB, 2, t + 100, &e) == EN_OK);
    CHECK(en_outbox_requeue(ob, PB, 7, t + 100, &e) == EN_OK);   /* absent: added */
    n = 0;
    CHECK(en_outbox_list(ob, EN_OUTBOX_FAILED, count_cb, &n, &e) == 0 && n == 0);
    n = 0;
    CHECK(en_outbox_list(ob, -1, count_cb, &n, &e) == 0 && n == 5);
    CHECK(en_outbox_counts(ob, c, &e) == EN_OK && c[EN_OUTBOX_PENDING] == 3);

    /* Back-off: doubles from the minimum, capped. */
    CHECK(en_outbox_backoff_ms(1, 30000, 3600000) == 30000);
    CHECK(en_outbox_backoff_ms(2, 30000, 3600000) == 60000);
    CHECK(en_outbox_backoff_ms(4, 30000, 3600000) == 240000);
    CHECK(en_outbox_backoff_ms(8, 30000, 3600000) == 3600000);
    CHECK(en_outbox_backoff_ms(1000, 30000, 3600000) == 3600000);
    en_outbox_close(ob);

    /* Not an outbox: refused with the file named. */
    snprintf(path, sizeof path, "%s/junk.db", dir);
    {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
            fputs("this is not a database, it is a text file of some length....\n", f);
            fclose(f);
        }
    }
    CHECK(en_outbox_open(path, &ob, &e) < 0 && strstr(e.msg, path));
    tst_scratch_remove(dir);
    TST_DONE();
}
