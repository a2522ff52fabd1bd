/*
 * send.cc - one association to the lab's PACS that C-STOREs a study
 * result's objects (en_send_files in en_send.h), over DCMTK's
 * DcmStorageSCU.  A thin wrapper: the outbox and its retries are plain C
 * (src/store/outbox.c, src/send/echonetd-send.c).
 *
 * The SCU reads each file's SOP class and transfer syntax, proposes one
 * presentation context per class (with Explicit and Implicit Little Endian
 * as fallbacks) and sends; every response status is kept, and anything but
 * Success or a warning for any file fails the whole attempt, so the outbox
 * retries the version as a whole (the UIDs are the same each time, so a
 * file the PACS did take is replaced, not duplicated).
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dstorscu.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "en_send.h"
}

#include <stdio.h>
#include <string.h>

#include <mutex>

namespace {

std::once_flag send_once;

/* Keeps each file's response status: DcmStorageSCU's transfer list is
 * protected and reported per instance through this hook. */
class SendSCU : public DcmStorageSCU {
public:
    int sent = 0, failed = 0, unsent = 0;
    Uint16 last_bad = 0;

protected:
    void notifySOPInstanceSent(const TransferEntry &e) override
    {
        if (!e.RequestSent) {
            unsent++;
            return;
        }
        if (e.ResponseStatusCode == STATUS_Success ||
            DICOM_WARNING_STATUS(e.ResponseStatusCode)) {
            sent++;
        } else {
            failed++;
            last_bad = e.ResponseStatusCode;
        }
    }
};

} // namespace

extern "C" int en_send_files(const en_send_peer *peer, const char *const *paths, int n,
                             en_err *err)
{
    SendSCU scu;
    OFCondition c;

    std::call_once(send_once, [] { OFLog::configure(OFLogger::OFF_LOG_LEVEL); });
    if (!peer->host[0] || !peer->peer_ae[0] || !peer->our_ae[0])
        return en_err_set(err, EN_EINVAL, "sending: [send] peer_host, peer_ae_title and "
                          "ae_title must be set");
    scu.setAETitle(peer->our_ae);
    scu.setPeerAETitle(peer->peer_ae);
    scu.setPeerHostName(peer->host);
    scu.setPeerPort((Uint16)peer->port);
    scu.setACSETimeout((Uint32)peer->timeout_s);
    scu.setDIMSETimeout((Uint32)peer->timeout_s);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setConnectionTimeout((Sint32)peer->timeout_s);
    for (int i = 0; i < n; i++) {
        c = scu.addDicomFile(paths[i], ERM_fileOnly, OFFalse);
        if (c.bad())
            return en_err_set(err, EN_EIO, "sending: cannot read the object to send (%s)",
                              c.text());
    }
    if ((c = scu.addPresentationContexts()).bad() || (c = scu.initNetwork()).bad())
        return en_err_set(err, EN_EIO, "sending: cannot prepare the association (%s)", c.text());
    if ((c = scu.negotiateAssociation()).bad())
        return en_err_set(err, EN_EIO, "sending to %s at %s:%d: no association (%s); is the "
                          "PACS up, and does it know AE title %s?", peer->peer_ae, peer->host,
                          peer->port, c.text(), peer->our_ae);
    c = scu.sendSOPInstances();
    scu.releaseAssociation();
    if (scu.unsent)
        return en_err_set(err, EN_EUNSUPPORTED, "sending to %s at %s:%d: %d of %d objects not "
                          "sent: the PACS accepted no presentation context for them (%s)",
                          peer->peer_ae, peer->host, peer->port, scu.unsent, n,
                          c.bad() ? c.text() : "SR or Encapsulated PDF not supported");
    if (c.bad() || scu.sent != n) {
        if (scu.failed)
            return en_err_set(err, EN_EIO, "sending to %s at %s:%d: %d of %d objects refused, "
                              "status %04Xh", peer->peer_ae, peer->host, peer->port,
                              scu.failed, n, scu.last_bad);
        return en_err_set(err, EN_EIO, "sending to %s at %s:%d: %d of %d objects confirmed (%s)",
                          peer->peer_ae, peer->host, peer->port, scu.sent, n,
                          c.bad() ? c.text() : "association ended early");
    }
    return EN_OK;
}
