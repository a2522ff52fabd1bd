/*
 * policy.c - what the receiver takes, decided in plain C before DCMTK reads
 * a byte of a data set: the SOP classes an echo study is made of (issue 12:
 * ultrasound images, secondary captures, and SR so a routed study arrives
 * whole), the transfer syntaxes echonetd's reader decodes, and the limits
 * of one association.  scp.cc asks net_admit for every C-STORE and answers
 * with the verdict's status; the verdict's reason is the log line.
 */
#include "net_int.h"

#include "en_dicom.h"

#include <stdio.h>
#include <string.h>

#define NET_MIB (1024.0 * 1024.0)

static const char *const net_usable[] = {
    "1.2.840.10008.5.1.4.1.1.6.1",    /* US Image */
    "1.2.840.10008.5.1.4.1.1.3.1",    /* US Multi-frame Image */
    "1.2.840.10008.5.1.4.1.1.6.2",    /* Enhanced US Volume */
    "1.2.840.10008.5.1.4.1.1.7",      /* Secondary Capture Image */
    "1.2.840.10008.5.1.4.1.1.7.1",    /* Multi-frame Single Bit SC */
    "1.2.840.10008.5.1.4.1.1.7.2",    /* Multi-frame Grayscale Byte SC */
    "1.2.840.10008.5.1.4.1.1.7.3",    /* Multi-frame Grayscale Word SC */
    "1.2.840.10008.5.1.4.1.1.7.4",    /* Multi-frame True Color SC */
    "1.2.840.10008.5.1.4.1.1.88.11",  /* Basic Text SR */
    "1.2.840.10008.5.1.4.1.1.88.22",  /* Enhanced SR */
    "1.2.840.10008.5.1.4.1.1.88.33",  /* Comprehensive SR */
    "1.2.840.10008.5.1.4.1.1.88.34",  /* Comprehensive 3D SR */
    "1.2.840.10008.5.1.4.1.1.88.35",  /* Extensible SR */
};

/* Candidates, uncompressed first; net_syntaxes keeps the decodable ones. */
static const char *const net_candidates[] = {
    "1.2.840.10008.1.2.1",       /* Explicit VR Little Endian */
    "1.2.840.10008.1.2",         /* Implicit VR Little Endian */
    "1.2.840.10008.1.2.1.99",    /* Deflated Explicit VR Little Endian */
    "1.2.840.10008.1.2.2",       /* Explicit VR Big Endian */
    "1.2.840.10008.1.2.4.80",    /* JPEG-LS Lossless */
    "1.2.840.10008.1.2.4.70",    /* JPEG Lossless, First-Order Prediction */
    "1.2.840.10008.1.2.4.57",    /* JPEG Lossless */
    "1.2.840.10008.1.2.5",       /* RLE Lossless */
    "1.2.840.10008.1.2.4.90",    /* JPEG 2000 Lossless */
    "1.2.840.10008.1.2.4.50",    /* JPEG Baseline */
    "1.2.840.10008.1.2.4.51",    /* JPEG Extended */
    "1.2.840.10008.1.2.4.81",    /* JPEG-LS Near-Lossless */
    "1.2.840.10008.1.2.4.91",    /* JPEG 2000 */
};

int net_sop_usable(const char *uid)
{
    for (size_t i = 0; i < sizeof net_usable / sizeof net_usable[0]; i++)
        if (strcmp(uid, net_usable[i]) == 0)
            return 1;
    return 0;
}

int net_syntaxes(const char **out, int max)
{
    int n = 0;

    for (size_t i = 0; i < sizeof net_candidates / sizeof net_candidates[0] && n < max; i++)
        if (en_dicom_syntax_supported(net_candidates[i]))
            out[n++] = net_candidates[i];
    return n;
}

static net_verdict net_refuse(uint16_t status, net_refusal kind, int prio, const char *comment)
{
    net_verdict v;

    memset(&v, 0, sizeof v);
    v.status = status;
    v.kind = kind;
    v.prio = prio;
    v.comment = comment;
    return v;
}

net_verdict net_admit(const en_net_scp_config *cfg, const net_request *r)
{
    net_verdict v;

    if (!net_sop_usable(r->sop_class)) {
        v = net_refuse(NET_STATUS_SOP_CLASS, NET_REFUSE_CLASS, EN_NET_NOTICE,
                       "SOP class not used by echonetd");
        snprintf(v.why, sizeof v.why, "%s (%s) is not a SOP class echonetd uses",
                 r->class_name, r->sop_class);
    } else if (strcmp(r->sop_class, r->context_class) != 0) {
        v = net_refuse(NET_STATUS_SOP_CLASS, NET_REFUSE_CONTEXT, EN_NET_NOTICE,
                       "SOP class differs from presentation context");
        snprintf(v.why, sizeof v.why, "the request's SOP class %s differs from its "
                 "presentation context's", r->class_name);
    } else if (r->assoc_bytes >= cfg->max_association_bytes) {
        v = net_refuse(NET_STATUS_RESOURCES, NET_REFUSE_SIZE, EN_NET_WARN,
                       "association size limit reached");
        snprintf(v.why, sizeof v.why, "the association has sent %.0f MiB, its budget "
                 "([recv] max_association_mb): send the rest on a new association",
                 (double)r->assoc_bytes / NET_MIB);
    } else if (r->assoc_ms >= cfg->max_association_s * 1000.0) {
        v = net_refuse(NET_STATUS_RESOURCES, NET_REFUSE_TIME, EN_NET_WARN,
                       "association time limit reached");
        snprintf(v.why, sizeof v.why, "the association is older than %d s "
                 "([recv] max_association_s): send the rest on a new association",
                 cfg->max_association_s);
    } else if (r->free_bytes >= 0 && (uint64_t)r->free_bytes < cfg->min_free_bytes) {
        v = net_refuse(NET_STATUS_RESOURCES, NET_REFUSE_DISK, EN_NET_WARN,
                       "receiver short of disk space");
        snprintf(v.why, sizeof v.why, "only %.0f MiB free in %s ([recv] min_free_mb)",
                 (double)r->free_bytes / NET_MIB, cfg->staging_dir);
    } else {
        v = net_refuse(0, NET_ADMITTED, EN_NET_DEBUG, NULL);
    }
    return v;
}
