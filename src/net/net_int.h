/*
 * net_int.h - what the DICOM network module's C and C++ halves share.
 *
 * The DCMTK wrappers (listen.cc, scp.cc) speak DICOM; everything about
 * files is plain C here (spool.c), so the rules that make an acknowledged
 * instance durable live in one small file that does not depend on DCMTK:
 *
 *   create   a new staging file, O_EXCL, named by the receiver alone
 *            ("r<unix ms>-<seq>-<random>.part"): never from the dataset
 *   commit   fsync it, walk it (en_dicom_scan: whole DICOM, safe to parse?),
 *            rename it into the inbox as "<same>.dcm" (RENAME_NOREPLACE),
 *            fsync the inbox and the staging folder; only then may the
 *            caller answer Success
 *   discard  unlink it
 *
 * policy.c decides, in C too, which requests are taken (SOP class, the
 * association's size and time, free space) and how a refusal is worded.
 *
 * Names: net_ for this module's internals.
 */
#ifndef EN_NET_INT_H
#define EN_NET_INT_H

#include <stddef.h>
#include <stdint.h>

#include "en_err.h"
#include "en_net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct net_spool {
    int staging_fd;        /* O_DIRECTORY handles: renames and fsyncs by fd */
    int inbox_fd;
    char staging[1024];
    char inbox[1024];
} net_spool;

typedef struct net_file {
    char name[64];         /* in the staging folder */
    int fd;                /* open for writing; -1 once closed */
} net_file;

/* Opens both folders; refuses missing or unwritable ones and two file
 * systems.  *removed counts leftover staging files deleted. */
int net_spool_open(net_spool *sp, const char *staging, const char *inbox,
                   int *removed, en_err *err);
void net_spool_close(net_spool *sp);

int net_spool_create(net_spool *sp, net_file *f, en_err *err);

/* Full path of f, for DCMTK's file stream. */
void net_spool_path(const net_spool *sp, const net_file *f, char *buf, size_t n);

/* Durable hand-over to the inbox; closes f.  EN_EFORMAT (nothing renamed)
 * when the walk finds the file cut inside an element, or finds what the
 * reader refuses before parsing (en_dicom_scan's `refuse`: nesting deeper
 * than DCMTK's recursive parser survives, zeros, too many elements): the
 * caller discards it.  EN_EIO when a flush or the rename failed. */
int net_spool_commit(net_spool *sp, net_file *f, en_err *err);

void net_spool_discard(net_spool *sp, net_file *f);

/* Free bytes on the spool's file system; -1 when unknown. */
int64_t net_spool_free_bytes(const net_spool *sp);

/* Copies an AE title without its padding spaces. */
void net_ae_copy(char *dst, const char *src);

/* ---- policy.c: what is taken -------------------------------------------- */

/* C-STORE statuses (PS3.4 Annex B) the receiver answers with. */
enum {
    NET_STATUS_SOP_CLASS = 0x0122,   /* Refused: SOP class not supported */
    NET_STATUS_RESOURCES = 0xA700,   /* Refused: out of resources */
    NET_STATUS_NOT_WHOLE = 0xC000    /* Error: cannot understand */
};

/* Kinds of refusal: an association logs each kind once. */
typedef enum net_refusal {
    NET_ADMITTED = 0,
    NET_REFUSE_CLASS,       /* a SOP class echonetd does not use */
    NET_REFUSE_CONTEXT,     /* request and presentation context disagree */
    NET_REFUSE_SIZE,        /* association past max_association_bytes */
    NET_REFUSE_TIME,        /* association past max_association_s */
    NET_REFUSE_DISK,        /* spool below min_free_bytes */
    NET_REFUSE_TOO_LARGE,   /* instance past max_instance_bytes */
    NET_REFUSE_NOT_WHOLE,   /* the received stream is not whole DICOM */
    NET_REFUSE_WRITE        /* the receiver could not write or move it */
} net_refusal;

/* One C-STORE request, as much as the decision needs (no instance UID). */
typedef struct net_request {
    const char *sop_class;       /* Affected SOP Class UID */
    const char *context_class;   /* its presentation context's abstract syntax */
    const char *class_name;      /* DCMTK's dictionary name, for messages */
    uint64_t assoc_bytes;        /* stored so far on this association */
    double assoc_ms;             /* the association's age */
    int64_t free_bytes;          /* on the spool's file system; -1 unknown */
} net_request;

typedef struct net_verdict {
    uint16_t status;             /* 0: admitted */
    net_refusal kind;
    int prio;                    /* EN_NET_* for the log line */
    const char *comment;         /* ErrorComment for the peer (64 characters) */
    char why[1400];              /* the log line's reason */
} net_verdict;

#define NET_MAX_SYNTAXES 16

int net_sop_usable(const char *uid);

/* The transfer syntaxes accepted (those this build decodes), uncompressed
 * first.  Returns how many were written to out. */
int net_syntaxes(const char **out, int max);

net_verdict net_admit(const en_net_scp_config *cfg, const net_request *r);

#ifdef __cplusplus
}
#endif

#endif
