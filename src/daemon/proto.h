/*
 * proto.h - what a study's process (`echonetd --process-one`) tells the
 * daemon, defined once: the child encodes with dm_msg_send, the daemon
 * decodes with dm_msg_parse, and both sides see the same struct.
 *
 * One message per line on the child's stdout, a keyword then fields
 * separated by single spaces; only the last field (a message) may hold
 * spaces, never a newline.  Nothing in a message identifies a patient: a
 * study is its pseudonym, a file its job name.
 *
 *   ready HOW MS                              the models are ready, MS ms
 *                                             after the process started;
 *                                             HOW: warm (the daemon's,
 *                                             shared) or loaded (its own)
 *   stage NAME                                a pipeline stage started
 *   study PSEUDONYM                           the study is known (it has a
 *                                             database row from now on)
 *   warning STAGE TEXT                        something the result does not
 *                                             depend on failed (the report)
 *   done PSEUDONYM STUDY_ID EF NBEATS MS FLAGS   the result is committed
 *   duplicate PSEUDONYM STUDY_ID              already done: not processed again
 *   failed CODE STAGE PSEUDONYM|- TEXT        the study failed (CODE is an
 *                                             en_err_name, e.g. EN_EFORMAT)
 *
 * `echonetd --finish-study` (a study's result over its clips) ends with
 * `failed` or with
 *
 *   result PSEUDONYM VERSION CHANGED EF USABLE ALL BEATS FLAGS
 *                                             the result's version now;
 *                                             CHANGED 1 when this run made it
 *
 * The child's exit status completes the story (enum in daemon.h).
 */
#ifndef EN_DAEMON_PROTO_H
#define EN_DAEMON_PROTO_H

#include <stdio.h>

#include "en_store.h"

typedef enum dm_msg_kind {
    DM_MSG_NONE = 0,
    DM_MSG_STAGE,
    DM_MSG_STUDY,
    DM_MSG_WARNING,
    DM_MSG_DONE,
    DM_MSG_DUPLICATE,
    DM_MSG_FAILED,
    DM_MSG_RESULT,
    DM_MSG_READY
} dm_msg_kind;

#define DM_MSG_WORD 64          /* stage, code and flag words */
#define DM_MSG_TEXT 1024        /* free text (one line) */

typedef struct dm_msg {
    dm_msg_kind kind;
    char stage[DM_MSG_WORD];        /* stage, warning, failed; ready: HOW */
    char study[EN_STORE_KEY_MAX];   /* study, done, duplicate, failed ("" = unknown) */
    long long study_id;             /* done, duplicate */
    double ef;                      /* done, result: NAN when no beat */
    int nbeats;                     /* done, result */
    int version, changed;           /* result */
    int clips_usable, clips_total;  /* result */
    double ms;                      /* done: wall time of the study; ready */
    char flags[EN_STORE_TEXT_MAX];  /* done, result: comma-separated, "none" when none */
    char code[DM_MSG_WORD];         /* failed */
    char text[DM_MSG_TEXT];         /* warning, failed */
} dm_msg;

/* Writes one message as a line and flushes: EN_OK, EN_EINVAL for a field
 * that does not fit its shape (a word with a space, too long), EN_EIO when
 * the write fails. */
int dm_msg_send(FILE *f, const dm_msg *m);

/* Parses one line (without its newline): EN_OK, or EN_EFORMAT for
 * anything that is not a well-formed message. */
int dm_msg_parse(const char *line, dm_msg *m);

/* 1 for the messages that end a process (done, duplicate, failed, result). */
int dm_msg_final(const dm_msg *m);

#endif
