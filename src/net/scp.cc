/*
 * scp.cc - the receiver (en_net.h): a thin wrapper that lets DCMTK speak
 * DICOM and decides only what echonetd must decide itself.
 *
 * DCMTK does the protocol: ASC_receiveAssociation reads each association
 * request (and does the TLS handshake through dcmtls), a DcmThreadSCP
 * negotiates it against the presentation contexts configured below and
 * runs its DIMSE loop in a thread of its own, and DIMSE_receiveDataSetInFile
 * streams each C-STORE data set to a file exactly as received.  We add:
 *
 * - the accept loop (not DcmSCPPool, whose loop cannot call back): it
 *   counts running associations, refuses past max_associations, calls the
 *   service's tick about once a second, cuts associations still running at
 *   twice their time budget, and on stop lets running ones finish for a
 *   grace period before cutting them (shutdown of the socket, so a blocked
 *   read returns at once);
 * - AE title checks and one log line per refusal (refuseAssociation);
 * - the C-STORE handler: which SOP classes we take, the per-association
 *   size and time budgets and the free-space floor (decided before the data
 *   set is read, refused data sets are drained with DIMSE_ignoreDataSet),
 *   a capped output stream (past max_instance_bytes it reports a write
 *   failure, so DIMSE drains the rest and we answer A700), then spool.c's
 *   durable hand-over to the inbox before the Success response is sent.
 *
 * Nothing identifying is logged: the C-STORE command carries the SOP
 * Instance UID, and it never reaches a message.  DCMTK's own loggers are
 * switched off (at debug level they dump whole commands).
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/scpthrd.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "en_dicom.h"
#include "en_net.h"
#include "en_util.h"
#include "net_int.h"
}

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <thread>

#define NET_MAX_PDU 65536u
#define NET_MIB (1024.0 * 1024.0)

/* The SOP classes an echo study is made of (issue 12): echonetd's reader
 * takes the image ones; SR is accepted so a routed study arrives whole. */
static const char *const net_usable[] = {
    UID_UltrasoundImageStorage,
    UID_UltrasoundMultiframeImageStorage,
    UID_EnhancedUSVolumeStorage,
    UID_SecondaryCaptureImageStorage,
    UID_MultiframeSingleBitSecondaryCaptureImageStorage,
    UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage,
    UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
    UID_MultiframeTrueColorSecondaryCaptureImageStorage,
    UID_BasicTextSRStorage,
    UID_EnhancedSRStorage,
    UID_ComprehensiveSRStorage,
    UID_Comprehensive3DSRStorage,
    UID_ExtensibleSRStorage,
};

/* The transfer syntaxes accepted: those echonetd's reader decodes (JPEG
 * 2000 only when the build has OpenJPEG). */
static const char *const net_syntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_JPEG2000TransferSyntax,
};

static bool net_is_usable(const char *uid)
{
    for (const char *u : net_usable)
        if (strcmp(uid, u) == 0)
            return true;
    return false;
}

struct net_worker;

struct en_net_scp {
    en_net_scp_config cfg;        /* allow-list and limits: under mu */
    std::mutex mu;
    en_net_log_fn log;
    void *user;
    net_spool spool;
    T_ASC_Network *net;
    DcmTLSTransportLayer *tls;
    DcmSharedSCPConfig shared;
    int port;
    const char *ts[sizeof net_syntaxes / sizeof net_syntaxes[0]];   /* decodable ones */
    int nts;
    std::list<net_worker *> workers;   /* under mu */
    en_net_scp_stats stats;            /* under mu */
};

/* One association: its thread, and what the accept loop needs to cut it. */
struct net_worker {
    en_net_scp *srv;
    T_ASC_Association *assoc;     /* under mu: NULL once destroyed */
    std::mutex mu;
    std::thread th;
    std::atomic<bool> done{false};
    double t0;                    /* en_mono_ms at accept */
    std::atomic<bool> cut{false};
};

static void net_vlog(en_net_scp *s, int prio, en_net_event ev, const char *peer,
                     const char *fmt, va_list ap)
{
    char msg[768];

    if (!s->log)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *c = msg; *c; c++)     /* DCMTK's condition texts span lines */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    s->log(s->user, prio, ev, peer ? peer : "", msg);
}

static void net_log(en_net_scp *s, int prio, en_net_event ev, const char *peer,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void net_log(en_net_scp *s, int prio, en_net_event ev, const char *peer,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    net_vlog(s, prio, ev, peer, fmt, ap);
    va_end(ap);
}

/* Our name for a SOP class: DCMTK's dictionary name, never an instance. */
static const char *net_class_name(const char *uid)
{
    return dcmFindNameOfUID(uid, "an unknown SOP class");
}

/* ---- the capped output stream ------------------------------------------ */

/* Writes to the staging file's descriptor.  Past the cap, or on a write
 * error, it reports failure: DIMSE_receiveDataSetInFile then drains the
 * rest of the data set from the network and returns OUTOFRESOURCES, so the
 * association survives and the peer gets a status. */
class NetCapConsumer : public DcmConsumer {
public:
    NetCapConsumer(int fd, uint64_t start, uint64_t cap)
        : fd_(fd), written_(start), cap_(cap), over_(false), errno_(0), status_(EC_Normal) {}
    OFBool good() const override { return status_.good(); }
    OFCondition status() const override { return status_; }
    OFBool isFlushed() const override { return OFTrue; }
    offile_off_t avail() const override { return OFstatic_cast(offile_off_t, 1) << 30; }
    offile_off_t write(const void *buf, offile_off_t len) override
    {
        const char *p = OFstatic_cast(const char *, buf);
        offile_off_t done = 0;

        if (status_.bad())
            return 0;
        if (written_ + (uint64_t)len > cap_) {
            over_ = true;
            status_ = EC_TooManyBytesRequested;
            return 0;
        }
        while (done < len) {
            ssize_t n = ::write(fd_, p + done, (size_t)(len - done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                errno_ = n < 0 ? errno : EIO;
                status_ = EC_InvalidStream;
                break;
            }
            done += n;
        }
        written_ += (uint64_t)done;
        return done;
    }
    void flush() override {}
    bool over() const { return over_; }
    int error() const { return errno_; }
    uint64_t written() const { return written_; }

private:
    int fd_;
    uint64_t written_, cap_;
    bool over_;
    int errno_;
    OFCondition status_;
};

class NetCapStream : public DcmOutputStream {
public:
    NetCapStream(int fd, uint64_t start, uint64_t cap)
        : DcmOutputStream(&consumer_), consumer_(fd, start, cap) {}
    const NetCapConsumer &consumer() const { return consumer_; }

private:
    NetCapConsumer consumer_;
};

/* ---- one association ---------------------------------------------------- */

class NetSCP : public DcmThreadSCP {
public:
    explicit NetSCP(net_worker *w) : w_(w), srv_(w->srv), accepted_(false), stored_(0),
        refused_(0), bytes_(0), end_("released")
    {
        std::lock_guard<std::mutex> l(srv_->mu);
        cfg_ = srv_->cfg;        /* a reload applies to the next association */
        peer_[0] = host_[0] = '\0';
    }

protected:
    void notifyAssociationRequest(const T_ASC_Parameters &params, DcmSCPActionType &) override
    {
        net_ae_copy(peer_, params.DULparams.callingAPTitle);
        net_ae_copy(called_, params.DULparams.calledAPTitle);
        snprintf(host_, sizeof host_, "%s", params.DULparams.callingPresentationAddress);
    }

    /* Every storage class is accepted (DCMTK's configurable profiles stop
     * at 128 contexts), so a class we do not use gets a C-STORE status the
     * peer can show (0122H) instead of a silent "no presentation context".
     * Within a context the peer's own order of transfer syntaxes wins: it
     * lists what it holds first, and taking that spares it a transcoding
     * (which a modality may not be able to do at all). */
    OFCondition negotiateAssociation() override
    {
        T_ASC_Parameters *p = w_->assoc->params;
        const int n = ASC_countPresentationContexts(p);

        for (int i = 0; i < n; i++) {
            T_ASC_PresentationContext pc;
            const char *chosen = NULL;
            OFCondition c = ASC_getPresentationContext(p, i, &pc);

            if (c.bad())
                return c;
            if (strcmp(pc.abstractSyntax, UID_VerificationSOPClass) != 0 &&
                !dcmIsaStorageSOPClassUID(pc.abstractSyntax, ESSC_All)) {
                c = ASC_refusePresentationContext(p, pc.presentationContextID,
                                                  ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            } else if (pc.proposedRole == ASC_SC_ROLE_SCP) {
                c = ASC_refusePresentationContext(p, pc.presentationContextID,
                                                  ASC_P_USERREJECTION);
            } else {
                for (int j = 0; j < pc.transferSyntaxCount && !chosen; j++)
                    for (int k = 0; k < srv_->nts && !chosen; k++)
                        if (strcmp(pc.proposedTransferSyntaxes[j], srv_->ts[k]) == 0)
                            chosen = srv_->ts[k];
                c = chosen ? ASC_acceptPresentationContext(p, pc.presentationContextID, chosen)
                           : ASC_refusePresentationContext(p, pc.presentationContextID,
                                                           ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
            }
            if (c.bad())
                return c;
        }
        return EC_Normal;
    }

    OFBool checkCalledAETitleAccepted(const OFString &) override
    {
        return strcmp(called_, cfg_.ae_title) == 0;
    }

    OFBool checkCallingAETitleAccepted(const OFString &) override
    {
        for (int i = 0; i < cfg_.nallow; i++)
            if (strcmp(peer_, cfg_.allow[i]) == 0)
                return OFTrue;
        return OFFalse;
    }

    /* DCMTK calls this for every refusal it decides (AE titles, no usable
     * presentation context, bad application context): one line each. */
    void refuseAssociation(const DcmRefuseReasonType reason) override
    {
        const char *why;
        char buf[160];

        switch (reason) {
        case DCMSCP_CALLED_AE_TITLE_NOT_RECOGNIZED:
            snprintf(buf, sizeof buf, "it called AE title '%s', this receiver is '%s' "
                     "([recv] ae_title)", called_, cfg_.ae_title);
            why = buf;
            break;
        case DCMSCP_CALLING_AE_TITLE_NOT_RECOGNIZED:
            why = "its calling AE title is not in [recv] allow";
            break;
        case DCMSCP_NO_PRESENTATION_CONTEXTS:
            why = "it proposed no SOP class and transfer syntax this receiver accepts";
            break;
        case DCMSCP_BAD_APPLICATION_CONTEXT_NAME:
            why = "it did not propose the DICOM application context";
            break;
        default:
            why = "internal error while negotiating";
            break;
        }
        net_log(srv_, EN_NET_WARN, EN_NET_EV_REFUSED, peer_,
                "association from AE '%s' (%s) refused: %s", peer_, host_, why);
        {
            std::lock_guard<std::mutex> l(srv_->mu);
            srv_->stats.refused_assoc++;
        }
        DcmThreadSCP::refuseAssociation(reason);
    }

    void notifyAssociationAcknowledge() override
    {
        accepted_ = true;
        std::lock_guard<std::mutex> l(srv_->mu);
        srv_->stats.associations++;
    }

    void notifyReleaseRequest() override { end_ = "released"; }
    void notifyAbortRequest() override { end_ = "aborted by the peer"; }
    void notifyDIMSEError(const OFCondition &c) override
    {
        if (c == DIMSE_NODATAAVAILABLE)
            snprintf(endbuf_, sizeof endbuf_, "dropped: no command for %d s ([recv] timeout_s)",
                     cfg_.timeout_s);
        else if (w_->cut)
            snprintf(endbuf_, sizeof endbuf_, "cut by the receiver");
        else
            snprintf(endbuf_, sizeof endbuf_, "ended on a network error (%s)", c.text());
        end_ = endbuf_;
    }

    void notifyAssociationTermination() override
    {
        if (!accepted_)
            return;
        net_log(srv_, EN_NET_INFO, EN_NET_EV_ASSOCIATION, peer_,
                "association from AE '%s' (%s) %s after %.1f s: %u stored, %u refused, "
                "%u cut, %.1f MiB", peer_, host_, end_, (en_mono_ms() - w_->t0) / 1000.0,
                stored_, refused_, cut_, (double)bytes_ / NET_MIB);
    }

    OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
                                      const DcmPresentationContextInfo &pc) override
    {
        if (msg->CommandField == DIMSE_C_ECHO_RQ)
            return DcmThreadSCP::handleIncomingCommand(msg, pc);
        if (msg->CommandField == DIMSE_C_STORE_RQ)
            return store(msg->msg.CStoreRQ, pc);
        net_log(srv_, EN_NET_NOTICE, EN_NET_EV_REFUSED, peer_,
                "association from AE '%s' (%s): DIMSE command 0x%04x is not served (only "
                "C-ECHO and C-STORE): association aborted", peer_, host_,
                (unsigned)msg->CommandField);
        return DIMSE_BADCOMMANDTYPE;
    }

private:
    net_worker *w_;
    en_net_scp *srv_;
    en_net_scp_config cfg_;
    char peer_[EN_NET_AE_MAX], called_[EN_NET_AE_MAX], host_[64];
    bool accepted_;
    unsigned stored_, refused_, cut_ = 0;
    uint64_t bytes_;
    const char *end_;
    char endbuf_[160];
    std::set<std::string> said_;   /* refusal reasons already logged */

    /* One line per kind of refusal per association: a peer pushing fifty
     * CT images hears fifty statuses but the journal gets one line. */
    void refusedOnce(int prio, en_net_event ev, const char *why)
    {
        if (said_.insert(why).second)
            net_log(srv_, prio, ev, peer_, "association from AE '%s' (%s): instance refused: "
                    "%s", peer_, host_, why);
        refused_++;
        std::lock_guard<std::mutex> l(srv_->mu);
        srv_->stats.refused++;
    }

    OFCondition respond(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID pid, Uint16 status,
                        const char *comment)
    {
        DcmDataset *detail = NULL;

        if (comment) {
            DcmLongString el(DCM_ErrorComment);
            char c64[65];
            snprintf(c64, sizeof c64, "%s", comment);   /* LO: 64 characters */
            el.putString(c64);
            addStatusDetail(&detail, &el);
        }
        OFCondition c = sendSTOREResponse(pid, req.MessageID, req.AffectedSOPClassUID,
                                          req.AffectedSOPInstanceUID, status, detail);
        delete detail;
        return c;
    }

    /* Refused before reading: drain the data set, answer with the status. */
    OFCondition refuse(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID pid, Uint16 status,
                       const char *comment, int prio, const char *why)
    {
        DIC_UL bytes = 0, pdvs = 0;
        OFCondition c = DIMSE_ignoreDataSet(w_->assoc, getConfig().getDIMSEBlockingMode(),
                                            (int)getConfig().getDIMSETimeout(), &bytes, &pdvs);
        refusedOnce(prio, EN_NET_EV_REFUSED, why);
        if (c.bad())
            return c;
        return respond(req, pid, status, comment);
    }

    OFCondition store(T_DIMSE_C_StoreRQ &req, const DcmPresentationContextInfo &pc)
    {
        const T_ASC_PresentationContextID pid = pc.presentationContextID;
        const char *cls = req.AffectedSOPClassUID;
        char why[1400];
        int64_t free_b;

        if (req.DataSetType == DIMSE_DATASET_NULL)
            return DIMSE_BADMESSAGE;
        if (!net_is_usable(cls)) {
            snprintf(why, sizeof why, "%s (%s) is not a SOP class echonetd uses",
                     net_class_name(cls), cls);
            return refuse(req, pid, STATUS_STORE_Refused_SOPClassNotSupported,
                          "SOP class not used by echonetd", EN_NET_NOTICE, why);
        }
        if (pc.abstractSyntax != cls) {
            snprintf(why, sizeof why, "the request's SOP class %s differs from its "
                     "presentation context's", net_class_name(cls));
            return refuse(req, pid, STATUS_STORE_Refused_SOPClassNotSupported,
                          "SOP class differs from presentation context", EN_NET_NOTICE, why);
        }
        if (bytes_ >= cfg_.max_association_bytes) {
            snprintf(why, sizeof why, "the association has sent %.0f MiB, its budget "
                     "([recv] max_association_mb): send the rest on a new association",
                     (double)bytes_ / NET_MIB);
            return refuse(req, pid, STATUS_STORE_Refused_OutOfResources,
                          "association size limit reached", EN_NET_WARN, why);
        }
        if (en_mono_ms() - w_->t0 >= cfg_.max_association_s * 1000.0) {
            snprintf(why, sizeof why, "the association is older than %d s "
                     "([recv] max_association_s): send the rest on a new association",
                     cfg_.max_association_s);
            return refuse(req, pid, STATUS_STORE_Refused_OutOfResources,
                          "association time limit reached", EN_NET_WARN, why);
        }
        free_b = net_spool_free_bytes(&srv_->spool);
        if (free_b >= 0 && (uint64_t)free_b < cfg_.min_free_bytes) {
            snprintf(why, sizeof why, "only %.0f MiB free in %s ([recv] min_free_mb)",
                     (double)free_b / NET_MIB, srv_->spool.staging);
            return refuse(req, pid, STATUS_STORE_Refused_OutOfResources,
                          "receiver short of disk space", EN_NET_WARN, why);
        }
        return receive(req, pid);
    }

    OFCondition receive(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID pid)
    {
        net_file f;
        en_err e;
        char path[sizeof srv_->spool.staging + sizeof f.name + 2], why[1400];
        DcmOutputFileStream *meta = NULL;
        T_ASC_PresentationContextID dpid = pid;
        off_t start;
        OFCondition c;
        int rc;

        if (net_spool_create(&srv_->spool, &f, &e) != EN_OK)
            return refuse(req, pid, STATUS_STORE_Refused_OutOfResources,
                          "receiver cannot write its staging file", EN_NET_ERR, e.msg);
        /* DCMTK writes the File Meta Information exactly as storescp does;
         * the data set follows through our capped stream. */
        net_spool_path(&srv_->spool, &f, path, sizeof path);
        c = DIMSE_createFilestream(path, &req, w_->assoc, pid, OFTrue, &meta);
        delete meta;
        if (c.bad() || (start = lseek(f.fd, 0, SEEK_END)) < 0) {
            net_spool_discard(&srv_->spool, &f);
            snprintf(why, sizeof why, "cannot write the file meta header in %s: %s",
                     srv_->spool.staging, c.bad() ? c.text() : strerror(errno));
            return refuse(req, pid, STATUS_STORE_Refused_OutOfResources,
                          "receiver cannot write its staging file", EN_NET_ERR, why);
        }
        NetCapStream out(f.fd, (uint64_t)start, cfg_.max_instance_bytes);
        c = DIMSE_receiveDataSetInFile(w_->assoc, getConfig().getDIMSEBlockingMode(),
                                       (int)getConfig().getDIMSETimeout(), &dpid, &out, NULL,
                                       NULL);
        const NetCapConsumer &cc = out.consumer();
        if (c.bad()) {
            const bool drained = c.module() == OFM_dcmnet && c.code() == DIMSEC_OUTOFRESOURCES;
            net_spool_discard(&srv_->spool, &f);
            if (drained && cc.over()) {
                snprintf(why, sizeof why, "an instance of %s is larger than %.0f MiB ([limits] "
                         "max_file_mb)", net_class_name(req.AffectedSOPClassUID),
                         (double)cfg_.max_instance_bytes / NET_MIB);
                refusedOnce(EN_NET_WARN, EN_NET_EV_REFUSED, why);
                return respond(req, pid, STATUS_STORE_Refused_OutOfResources,
                               "instance larger than the receiver's limit");
            }
            if (drained && cc.error()) {
                snprintf(why, sizeof why, "writing in %s failed: %s", srv_->spool.staging,
                         strerror(cc.error()));
                refusedOnce(EN_NET_ERR, EN_NET_EV_ERROR, why);
                return respond(req, pid, STATUS_STORE_Refused_OutOfResources,
                               "receiver cannot write its staging file");
            }
            net_log(srv_, EN_NET_WARN, EN_NET_EV_CUT, peer_, "association from AE '%s' (%s): "
                    "transfer of an instance of %s cut after %.1f MiB (%s): nothing of it kept",
                    peer_, host_, net_class_name(req.AffectedSOPClassUID),
                    (double)cc.written() / NET_MIB, w_->cut ? "cut by the receiver" : c.text());
            cut_++;
            std::lock_guard<std::mutex> l(srv_->mu);
            srv_->stats.refused++;
            return c;
        }
        if (dpid != pid) {
            net_spool_discard(&srv_->spool, &f);
            net_log(srv_, EN_NET_WARN, EN_NET_EV_CUT, peer_, "association from AE '%s' (%s): "
                    "a data set arrived on another presentation context than its command: "
                    "association aborted, nothing of it kept", peer_, host_);
            return makeDcmnetCondition(DIMSEC_INVALIDPRESENTATIONCONTEXTID, OF_error,
                                       "data set and command on different contexts");
        }
        rc = net_spool_commit(&srv_->spool, &f, &e);
        if (rc != EN_OK) {
            net_spool_discard(&srv_->spool, &f);
            if (rc == EN_EFORMAT) {
                refusedOnce(EN_NET_NOTICE, EN_NET_EV_REFUSED, e.msg);
                return respond(req, pid, STATUS_STORE_Error_CannotUnderstand,
                               "data set is not whole DICOM");
            }
            refusedOnce(EN_NET_ERR, EN_NET_EV_ERROR, e.msg);
            return respond(req, pid, STATUS_STORE_Refused_OutOfResources,
                           "receiver cannot store the instance");
        }
        stored_++;
        bytes_ += cc.written();
        {
            std::lock_guard<std::mutex> l(srv_->mu);
            srv_->stats.stored++;
            srv_->stats.bytes += cc.written();
        }
        net_log(srv_, EN_NET_DEBUG, EN_NET_EV_STORED, peer_, "association from AE '%s': an "
                "instance of %s (%.1f MiB) is in the inbox", peer_,
                net_class_name(req.AffectedSOPClassUID), (double)cc.written() / NET_MIB);
        return respond(req, pid, STATUS_Success, NULL);
    }
};

/* ---- set-up --------------------------------------------------------------- */

static std::once_flag net_once;

static void net_init_once(void)
{
    /* DCMTK's loggers would print commands (with UIDs) at debug level. */
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
    dcmDisableGethostbyaddr.set(OFTrue);    /* no reverse DNS per association */
}

static int net_contexts(en_net_scp *s, en_err *err)
{
    DcmSCPConfig &c = *s->shared;

    s->nts = 0;
    for (const char *t : net_syntaxes)
        if (en_dicom_syntax_supported(t))
            s->ts[s->nts++] = t;
    if (s->nts == 0)
        return en_err_set(err, EN_EUNSUPPORTED, "receiver: no transfer syntax is decodable");
    c.setAETitle(s->cfg.ae_title);
    c.setRespondWithCalledAETitle(OFFalse);
    c.setMaxReceivePDULength(NET_MAX_PDU);
    c.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    c.setDIMSETimeout((Uint32)s->cfg.timeout_s);
    c.setACSETimeout((Uint32)(s->cfg.timeout_s < 30 ? s->cfg.timeout_s : 30));
    c.setHostLookupEnabled(OFFalse);
    c.setProgressNotificationMode(OFFalse);
    /* Sockets are made in the accept thread, which must come back to its
     * tick within the watchdog period: a peer stalling in its association
     * request or TLS handshake holds it for the ACSE timeout at most.  Each
     * association thread then sets timeout_s on its own socket (the DIMSE
     * timeout alone only bounds the wait for the next PDU, not a peer that
     * stops in the middle of one). */
    dcmSocketReceiveTimeout.set((Sint32)s->shared->getACSETimeout());
    dcmSocketSendTimeout.set((Sint32)s->shared->getACSETimeout());
    return EN_OK;
}

static int net_tls(en_net_scp *s, en_err *err)
{
    const en_net_tls *t = &s->cfg.tls;
    struct stat st;
    OFCondition r;

    if (!t->certificate[0] || !t->private_key[0])
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls = yes needs tls_certificate "
                          "and tls_private_key");
    s->tls = new DcmTLSTransportLayer(NET_ACCEPTOR, NULL, OFTrue);
    if (s->tls->setPrivateKeyFile(t->private_key, DCF_Filetype_PEM).bad())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_private_key = %s: cannot load "
                          "a PEM private key from it (unencrypted, readable by echonetd)",
                          t->private_key);
    if (s->tls->setCertificateFile(t->certificate, DCF_Filetype_PEM).bad())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_certificate = %s: cannot load "
                          "a PEM certificate from it", t->certificate);
    if (!s->tls->checkPrivateKeyMatchesCertificate())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_private_key %s does not belong "
                          "to tls_certificate %s", t->private_key, t->certificate);
    if (t->trusted[0]) {
        if (stat(t->trusted, &st) != 0)
            return en_err_set(err, EN_ENOTFOUND, "receiver: [recv] tls_trusted = %s: %s",
                              t->trusted, strerror(errno));
        r = S_ISDIR(st.st_mode) ? s->tls->addTrustedCertificateDir(t->trusted, DCF_Filetype_PEM)
                                : s->tls->addTrustedCertificateFile(t->trusted, DCF_Filetype_PEM);
        if (r.bad())
            return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_trusted = %s: no PEM "
                              "certificate could be loaded (%s)", t->trusted, r.text());
    } else if (t->verify_peer) {
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_verify_peer = yes needs "
                          "tls_trusted (the peers' certificates or their CA)");
    }
    if ((r = s->tls->setTLSProfile(TSP_Profile_BCP195_ND)).bad() ||
        (r = s->tls->activateCipherSuites()).bad())
        return en_err_set(err, EN_EINVAL, "receiver: TLS profile BCP 195: %s", r.text());
    s->tls->setCertificateVerification(t->verify_peer ? DCV_requireCertificate
                                                      : DCV_ignoreCertificate);
    if ((r = ASC_setTransportLayer(s->net, s->tls, 0)).bad())
        return en_err_set(err, EN_EINVAL, "receiver: enabling TLS: %s", r.text());
    return EN_OK;
}

static int net_listen(en_net_scp *s, en_err *err)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    OFCondition r = ASC_initializeNetwork(NET_ACCEPTOR, s->cfg.port,
                                          (int)s->shared->getACSETimeout(), &s->net);

    if (r.bad()) {
        s->net = NULL;
        return en_err_set(err, EN_EIO, "receiver: cannot listen on port %d: %s (is another "
                          "DICOM receiver using it? ports below 1024 need "
                          "CAP_NET_BIND_SERVICE)", s->cfg.port, r.text());
    }
    s->port = s->cfg.port;
    if (getsockname(DUL_networkSocket(s->net->network), (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    return EN_OK;
}

extern "C" int en_net_scp_open(en_net_scp **out, const en_net_scp_config *cfg,
                               en_net_log_fn log, void *user, en_err *err)
{
    en_net_scp *s = NULL;
    int rc, removed = 0;

    *out = NULL;
    if ((rc = en_net_check_ae(cfg->ae_title, "[recv] ae_title", err)))
        return rc;
    if (cfg->port < 0 || cfg->port > 65535 || cfg->max_associations < 1 || cfg->timeout_s < 1 ||
        cfg->max_association_s < 1)
        return en_err_set(err, EN_EINVAL, "receiver: port, max_associations, timeout_s or "
                          "max_association_s out of range");
    std::call_once(net_once, net_init_once);
    try {
        s = new en_net_scp();
        s->cfg = *cfg;
        s->log = log;
        s->user = user;
        s->net = NULL;
        s->tls = NULL;
        s->spool.staging_fd = s->spool.inbox_fd = -1;
        memset(&s->stats, 0, sizeof s->stats);
        if ((rc = net_spool_open(&s->spool, cfg->staging_dir, cfg->inbox_dir, &removed, err)) ||
            (rc = net_contexts(s, err)) || (rc = net_listen(s, err)) ||
            (cfg->tls.enabled && (rc = net_tls(s, err)))) {
            en_net_scp_close(s);
            return rc;
        }
    } catch (const std::bad_alloc &) {
        en_net_scp_close(s);
        return en_err_set(err, EN_ENOMEM, "receiver: out of memory while starting");
    }
    if (removed)
        net_log(s, EN_NET_NOTICE, EN_NET_EV_CUT, "", "removed %d unfinished transfer(s) left in "
                "%s by an earlier run: never acknowledged, the peers send them again", removed,
                cfg->staging_dir);
    *out = s;
    return EN_OK;
}

/* ---- the accept loop -------------------------------------------------------- */

/* DcmTransportConnection keeps its socket protected; a pointer to the
 * inherited member, taken in a derived class, is the standard way to read
 * it without changing DCMTK.  Only used to shut the socket down. */
struct NetSocketOf : DcmTransportConnection {
    static DcmNativeSocketType of(DcmTransportConnection *c)
    {
        return (c->*(&NetSocketOf::getSocket))();
    }
};

/* The association's socket: timeout_s for every read and write. */
static void net_socket_timeouts(T_ASC_Association *a, int seconds)
{
    DcmTransportConnection *tc = a->DULassociation ? DUL_getTransportConnection(a->DULassociation)
                                                   : NULL;
    struct timeval tv = { seconds, 0 };

    if (!tc)
        return;
    setsockopt(NetSocketOf::of(tc), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(NetSocketOf::of(tc), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void net_worker_main(net_worker *w)
{
    net_socket_timeouts(w->assoc, w->srv->cfg.timeout_s);
    try {
        NetSCP *scp = new NetSCP(w);
        scp->setSharedConfig(w->srv->shared);
        scp->run(w->assoc);
        std::lock_guard<std::mutex> l(w->mu);
        delete scp;               /* drops and destroys the association */
        w->assoc = NULL;
    } catch (const std::exception &) {
        net_log(w->srv, EN_NET_ERR, EN_NET_EV_ERROR, "", "association thread: out of memory; "
                "the association was dropped");
    }
    w->done = true;
}

/* Shuts the connection under a running association down (from the accept
 * thread): its blocked read returns, DCMTK ends the association, and
 * whatever was half received is discarded by the handler. */
static void net_cut(net_worker *w)
{
    std::lock_guard<std::mutex> l(w->mu);
    if (w->cut || !w->assoc || !w->assoc->DULassociation)
        return;
    DcmTransportConnection *tc = DUL_getTransportConnection(w->assoc->DULassociation);
    w->cut = true;
    if (tc)
        shutdown(NetSocketOf::of(tc), SHUT_RDWR);
}

/* Joins finished workers; cuts those past twice their time budget. */
static int net_reap(en_net_scp *s, bool cut_all)
{
    std::list<net_worker *> done;
    int running = 0;
    double now = en_mono_ms(), hard = 2000.0 * s->cfg.max_association_s;

    {
        std::lock_guard<std::mutex> l(s->mu);
        for (auto it = s->workers.begin(); it != s->workers.end();) {
            if ((*it)->done) {
                done.push_back(*it);
                it = s->workers.erase(it);
                continue;
            }
            running++;
            if (cut_all || now - (*it)->t0 > hard) {
                if (!(*it)->cut && !cut_all) {
                    char ae[EN_NET_AE_MAX] = "";
                    {
                        std::lock_guard<std::mutex> wl((*it)->mu);
                        if ((*it)->assoc && (*it)->assoc->params)
                            net_ae_copy(ae, (*it)->assoc->params->DULparams.callingAPTitle);
                    }
                    net_log(s, EN_NET_WARN, EN_NET_EV_CUT, ae, "association from AE '%s' cut: "
                            "still running after %d s, twice [recv] max_association_s", ae,
                            2 * s->cfg.max_association_s);
                }
                net_cut(*it);
            }
            ++it;
        }
        s->stats.active = running;
    }
    for (net_worker *w : done) {
        w->th.join();
        delete w;
    }
    return running;
}

static void net_reject_busy(en_net_scp *s, T_ASC_Association *a, int running)
{
    T_ASC_RejectParameters rej;
    char ae[EN_NET_AE_MAX] = "";

    if (a->params)
        net_ae_copy(ae, a->params->DULparams.callingAPTitle);
    net_log(s, EN_NET_WARN, EN_NET_EV_REFUSED, ae, "association from AE '%s' (%s) refused for "
            "now: %d associations already running ([recv] max_associations); the peer may "
            "retry", ae, a->params ? a->params->DULparams.callingPresentationAddress : "?",
            running);
    rej.result = ASC_RESULT_REJECTEDTRANSIENT;
    rej.source = ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED;
    rej.reason = ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED;
    ASC_rejectAssociation(a, &rej);
    {
        std::lock_guard<std::mutex> l(s->mu);
        s->stats.refused_assoc++;
    }
}

static bool net_start_worker(en_net_scp *s, T_ASC_Association *a)
{
    net_worker *w = NULL;

    try {
        w = new net_worker();
        w->srv = s;
        w->assoc = a;
        w->t0 = en_mono_ms();
        std::lock_guard<std::mutex> l(s->mu);
        w->th = std::thread(net_worker_main, w);
        s->workers.push_back(w);
        s->stats.active++;
        return true;
    } catch (const std::exception &) {
        delete w;
        net_log(s, EN_NET_ERR, EN_NET_EV_ERROR, "", "cannot start a thread for an association "
                "(out of memory or threads): it was dropped");
        return false;
    }
}

extern "C" int en_net_scp_serve(en_net_scp *s, int (*tick)(void *user), void *tick_user,
                                int grace_s, en_err *err)
{
    const bool secure = s->tls != NULL;
    int rc = EN_OK, failures = 0;

    for (;;) {
        if (tick && tick(tick_user))
            break;
        net_reap(s, false);
        T_ASC_Association *a = NULL;
        OFCondition r = ASC_receiveAssociation(s->net, &a, NET_MAX_PDU, NULL, NULL,
                                               secure ? OFTrue : OFFalse, DUL_NOBLOCK, 1);
        if (r == DUL_NOASSOCIATIONREQUEST) {
            ASC_destroyAssociation(&a);
            failures = 0;
            continue;
        }
        if (r.bad()) {
            /* A port scan, a peer speaking something else, a failed TLS
             * handshake: nothing was accepted. */
            net_log(s, EN_NET_NOTICE, EN_NET_EV_REFUSED, "", "a connection was dropped before "
                    "any association: %s", r.text());
            if (a) {
                ASC_dropAssociation(a);
                ASC_destroyAssociation(&a);
            }
            if (++failures > 1000) {   /* the listening socket itself is broken */
                rc = en_err_set(err, EN_EIO, "receiver: accepting connections keeps failing "
                                "(%s)", r.text());
                break;
            }
            continue;
        }
        failures = 0;
        int max, running = net_reap(s, false);   /* now, not before the wait */
        {
            std::lock_guard<std::mutex> l(s->mu);
            max = s->cfg.max_associations;
        }
        if (running >= max || !net_start_worker(s, a)) {
            if (running >= max)
                net_reject_busy(s, a, running);
            ASC_dropAssociation(a);
            ASC_destroyAssociation(&a);
        }
    }
    /* Stop: no new connection is even accepted, running ones may finish. */
    ASC_dropNetwork(&s->net);
    s->net = NULL;
    for (double t0 = en_mono_ms(); net_reap(s, false) > 0;) {
        if (en_mono_ms() - t0 >= grace_s * 1000.0) {
            int n = net_reap(s, true);
            if (n > 0)
                net_log(s, EN_NET_NOTICE, EN_NET_EV_CUT, "", "stopping: %d association(s) "
                        "still running after %d s were cut; their unacknowledged instances "
                        "will be sent again by the peers", n, grace_s);
            break;
        }
        if (tick)
            tick(tick_user);    /* keeps the watchdog fed; the answer is known */
        usleep(100 * 1000);
    }
    for (;;) {
        std::list<net_worker *> left;
        {
            std::lock_guard<std::mutex> l(s->mu);
            left.swap(s->workers);
            s->stats.active = 0;
        }
        if (left.empty())
            break;
        for (net_worker *w : left) {
            w->th.join();
            delete w;
        }
    }
    return rc;
}

extern "C" int en_net_scp_reconfigure(en_net_scp *s, const en_net_scp_config *cfg,
                                      int *restart_needed, en_err *err)
{
    const en_net_scp_config *o = &s->cfg;
    int rc;

    if ((rc = en_net_check_ae(cfg->ae_title, "[recv] ae_title", err)))
        return rc;
    if (cfg->max_associations < 1 || cfg->timeout_s < 1 || cfg->max_association_s < 1)
        return en_err_set(err, EN_EINVAL, "receiver: max_associations, timeout_s or "
                          "max_association_s out of range");
    std::lock_guard<std::mutex> l(s->mu);
    *restart_needed = strcmp(o->ae_title, cfg->ae_title) != 0 || o->port != cfg->port ||
                      strcmp(o->staging_dir, cfg->staging_dir) != 0 ||
                      strcmp(o->inbox_dir, cfg->inbox_dir) != 0 ||
                      o->tls.enabled != cfg->tls.enabled ||
                      o->tls.verify_peer != cfg->tls.verify_peer ||
                      strcmp(o->tls.certificate, cfg->tls.certificate) != 0 ||
                      strcmp(o->tls.private_key, cfg->tls.private_key) != 0 ||
                      strcmp(o->tls.trusted, cfg->tls.trusted) != 0 ||
                      o->timeout_s != cfg->timeout_s;
    s->cfg.nallow = cfg->nallow;
    memcpy(s->cfg.allow, cfg->allow, sizeof s->cfg.allow);
    s->cfg.max_instance_bytes = cfg->max_instance_bytes;
    s->cfg.max_association_bytes = cfg->max_association_bytes;
    s->cfg.max_association_s = cfg->max_association_s;
    s->cfg.max_associations = cfg->max_associations;
    s->cfg.min_free_bytes = cfg->min_free_bytes;
    return EN_OK;
}

extern "C" void en_net_scp_stats_get(en_net_scp *s, en_net_scp_stats *out)
{
    std::lock_guard<std::mutex> l(s->mu);
    *out = s->stats;
}

extern "C" int en_net_scp_port(const en_net_scp *s)
{
    return s->port;
}

extern "C" void en_net_scp_close(en_net_scp *s)
{
    if (!s)
        return;
    if (s->net)
        ASC_dropNetwork(&s->net);
    delete s->tls;
    net_spool_close(&s->spool);
    delete s;
}
