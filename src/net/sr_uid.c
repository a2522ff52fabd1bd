/*
 * sr_uid.c - UIDs for the objects echonetd sends back (en_sr.h).
 *
 * A result version must map to the same UIDs every time it is written, so
 * that writing it again after a crash, or sending it again by hand, gives
 * the PACS the same objects (it replaces them) rather than twins.  So the
 * UIDs are not random: they are the "2.25" form of a name-based UUID (PS3.5
 * B.2), the first 128 bits of SHA-256(seed, 0, role) with the version 8 and
 * variant bits of RFC 9562 set.  The seed holds the pseudonym (keyed by the
 * site secret), so nobody can work a UID out from public values.
 */
#include "en_sr.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void uid_of(const char *seed, const char *role, char out[EN_SR_UID_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned __int128 v = 0;
    char digits[48];
    int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    memset(md, 0, sizeof md);
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, seed, strlen(seed) + 1) == 1 &&   /* with its NUL */
        EVP_DigestUpdate(ctx, role, strlen(role)) == 1)
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80);   /* version 8 */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);   /* RFC variant */
    for (int i = 0; i < 16; i++)
        v = v << 8 | md[i];
    do {
        digits[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    memcpy(out, "2.25.", 5);
    for (int i = 0; i < n; i++)
        out[5 + i] = digits[n - 1 - i];
    out[5 + n] = '\0';
}

void en_sr_uid_from(const char *seed, char out[EN_SR_UID_MAX])
{
    uid_of(seed, "uid", out);
}

int en_sr_uids_derive(const char *seed, en_sr_uids *out, en_err *err)
{
    if (!seed || !seed[0])
        return en_err_set(err, EN_EINVAL, "SR: an empty seed cannot make UIDs (give the "
                          "pseudonym and the result version)");
    uid_of(seed, "sr-series", out->sr_series);
    uid_of(seed, "sr-instance", out->sr_instance);
    uid_of(seed, "pdf-series", out->pdf_series);
    uid_of(seed, "pdf-instance", out->pdf_instance);
    return EN_OK;
}
