/*
 * scp_config.c - the receiver's settings before any socket exists: the
 * defaults and the AE title rules, kept apart from the DCMTK wrapper so a
 * configuration can be checked (and its errors worded) without a network.
 *
 * An AE title is at most 16 characters of the Default Character Repertoire
 * without backslash or control characters; leading and trailing spaces are
 * not significant (PS3.5 6.2), so they are dropped here and when comparing.
 */
#include "en_net.h"
#include "net_int.h"

#include <stdio.h>
#include <string.h>

void en_net_scp_config_default(en_net_scp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->ae_title, sizeof cfg->ae_title, "ECHONETD");
    cfg->port = 11112;
    cfg->max_instance_bytes = (uint64_t)2 << 30;
    cfg->max_association_bytes = (uint64_t)16 << 30;
    cfg->max_association_s = 3600;
    cfg->timeout_s = 60;
    cfg->max_associations = 8;
    cfg->min_free_bytes = (uint64_t)1 << 30;
    cfg->tls.verify_peer = 1;
}

int en_net_check_ae(const char *ae, const char *what, en_err *err)
{
    size_t n = strlen(ae), spaces = 0;

    if (n == 0 || n > 16)
        return en_err_set(err, EN_EINVAL, "%s: AE title '%s' must have 1 to 16 characters",
                          what, ae);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ae[i];
        if (c < 0x20 || c > 0x7e || c == '\\')
            return en_err_set(err, EN_EINVAL, "%s: AE title '%s' holds a character DICOM does "
                              "not allow (control, non-ASCII or backslash)", what, ae);
        spaces += c == ' ';
    }
    if (spaces == n)
        return en_err_set(err, EN_EINVAL, "%s: an AE title cannot be only spaces", what);
    return EN_OK;
}

int en_net_parse_ae_list(const char *text, en_net_scp_config *cfg, en_err *err)
{
    const char *p = text;

    cfg->nallow = 0;
    while (*p) {
        char one[64];
        size_t n = strcspn(p, ", \t");
        int rc;

        if (n == 0) {
            p++;
            continue;
        }
        if (n >= sizeof one)
            n = sizeof one - 1;  /* too long anyway: en_net_check_ae says so */
        memcpy(one, p, n);
        one[n] = '\0';
        p += strcspn(p, ", \t");
        if ((rc = en_net_check_ae(one, "[recv] allow", err)))
            return rc;
        if (cfg->nallow == EN_NET_MAX_PEERS)
            return en_err_set(err, EN_EINVAL, "[recv] allow: more than %d AE titles",
                              EN_NET_MAX_PEERS);
        net_ae_copy(cfg->allow[cfg->nallow++], one);
    }
    return EN_OK;
}
