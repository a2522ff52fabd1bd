/*
 * net_int.h - what the DICOM network module's C and C++ halves share.
 *
 * The DCMTK wrapper (scp.cc) speaks DICOM; everything about files is plain
 * C here (spool.c), so the rules that make an acknowledged instance durable
 * live in one small file that does not depend on DCMTK:
 *
 *   create   a new staging file, O_EXCL, named by the receiver alone
 *            ("r<unix ms>-<seq>-<random>.part"): never from the dataset
 *   commit   fsync it, walk it (en_dicom_scan: whole DICOM?), rename it
 *            into the inbox as "<same>.dcm" (RENAME_NOREPLACE), fsync the
 *            inbox and the staging folder; only then may the caller answer
 *            Success
 *   discard  unlink it
 *
 * Names: net_ for this module's internals.
 */
#ifndef EN_NET_INT_H
#define EN_NET_INT_H

#include <stddef.h>
#include <stdint.h>

#include "en_err.h"

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
 * when the walk finds the file cut inside an element: the caller discards
 * it.  EN_EIO when a flush or the rename failed. */
int net_spool_commit(net_spool *sp, net_file *f, en_err *err);

void net_spool_discard(net_spool *sp, net_file *f);

/* Free bytes on the spool's file system; -1 when unknown. */
int64_t net_spool_free_bytes(const net_spool *sp);

/* Copies an AE title without its padding spaces. */
void net_ae_copy(char *dst, const char *src);

#ifdef __cplusplus
}
#endif

#endif
