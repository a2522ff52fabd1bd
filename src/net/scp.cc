/*
 * scp.cc - one association of the receiver (en_net.h), in the thread
 * listen.cc gave it: a DcmThreadSCP that negotiates, checks AE titles,
 * answers C-ECHO and stores C-STORE data sets into the inbox.
 *
 * DCMTK does the protocol (negotiation, DIMSE, DIMSE_receiveDataSetInFile
 * streaming each data set to a file exactly as received).  We decide:
 * - negotiation: every storage SOP class, the transfer syntaxes echonetd
 *   reads, in the peer's order of preference;
 * - AE titles, with one log line per refused association
 *   (refuseAssociation);
 * - per C-STORE, policy.c's verdict before the data set is read (a refused
 *   one is drained with DIMSE_ignoreDataSet, so the association goes on);
 *   a capped output stream (past max_instance_bytes it reports a write
 *   failure, DIMSE drains the rest and we answer A700); then spool.c's
 *   durable hand-over to the inbox, and only then Success.
 *
 * Nothing identifying is logged: the C-STORE command carries the SOP
 * Instance UID, and it never reaches a message.
 */
#include "scp_int.h"

#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/scpthrd.h"

extern "C" {
#include "en_util.h"
}

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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

/* ---- one association --------------------------------------------------------- */

class NetSCP : public DcmThreadSCP {
public:
    explicit NetSCP(net_worker *w) : w_(w), srv_(w->srv), accepted_(false), stored_(0),
        refused_(0), bytes_(0), end_("released")
    {
        std::lock_guard<std::mutex> l(srv_->mu);
        cfg_ = srv_->cfg;        /* a reload applies to the next association */
        peer_[0] = called_[0] = host_[0] = endbuf_[0] = '\0';
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
    unsigned said_ = 0;            /* net_refusal kinds already logged */

    /* One line per kind of refusal per association: a peer pushing fifty
     * CT images hears fifty statuses, the journal gets one line, and the
     * association's summary line has the count. */
    void refused(net_refusal kind, int prio, const char *why)
    {
        const unsigned bit = 1u << kind;

        if (!(said_ & bit))
            net_log(srv_, prio, kind == NET_REFUSE_WRITE ? EN_NET_EV_ERROR : EN_NET_EV_REFUSED,
                    peer_, "association from AE '%s' (%s): instance refused: %s", peer_, host_,
                    why);
        said_ |= bit;
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
    OFCondition refuse(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID pid,
                       const net_verdict &v)
    {
        DIC_UL bytes = 0, pdvs = 0;
        OFCondition c = DIMSE_ignoreDataSet(w_->assoc, getConfig().getDIMSEBlockingMode(),
                                            (int)getConfig().getDIMSETimeout(), &bytes, &pdvs);
        refused(v.kind, v.prio, v.why);
        if (c.bad())
            return c;
        return respond(req, pid, v.status, v.comment);
    }

    /* A refusal decided here rather than by policy.c (the receiver's own
     * failures): the same verdict shape. */
    static net_verdict verdict(uint16_t status, net_refusal kind, int prio, const char *comment,
                               const char *why)
    {
        net_verdict v;
        v.status = status;
        v.kind = kind;
        v.prio = prio;
        v.comment = comment;
        snprintf(v.why, sizeof v.why, "%s", why);
        return v;
    }

    OFCondition store(T_DIMSE_C_StoreRQ &req, const DcmPresentationContextInfo &pc)
    {
        net_request r;

        if (req.DataSetType == DIMSE_DATASET_NULL)
            return DIMSE_BADMESSAGE;
        r.sop_class = req.AffectedSOPClassUID;
        r.context_class = pc.abstractSyntax.c_str();
        r.class_name = net_class_name(req.AffectedSOPClassUID);
        r.assoc_bytes = bytes_;
        r.assoc_ms = en_mono_ms() - w_->t0;
        r.free_bytes = net_spool_free_bytes(&srv_->spool);
        const net_verdict v = net_admit(&cfg_, &r);
        if (v.status != 0)
            return refuse(req, pc.presentationContextID, v);
        return receive(req, pc.presentationContextID);
    }

    OFCondition receive(T_DIMSE_C_StoreRQ &req, T_ASC_PresentationContextID pid)
    {
        const char *cls = net_class_name(req.AffectedSOPClassUID);
        net_file f;
        en_err e;
        char path[sizeof srv_->spool.staging + sizeof f.name + 2], why[1400];
        DcmOutputFileStream *meta = NULL;
        T_ASC_PresentationContextID dpid = pid;
        off_t start;
        OFCondition c;
        int rc;

        if (net_spool_create(&srv_->spool, &f, &e) != EN_OK)
            return refuse(req, pid, verdict(NET_STATUS_RESOURCES, NET_REFUSE_WRITE, EN_NET_ERR,
                                            "receiver cannot write its staging file", e.msg));
        /* DCMTK writes the File Meta Information exactly as storescp does;
         * the data set follows through our capped stream. */
        net_spool_path(&srv_->spool, &f, path, sizeof path);
        c = DIMSE_createFilestream(path, &req, w_->assoc, pid, OFTrue, &meta);
        delete meta;
        if (c.bad() || (start = lseek(f.fd, 0, SEEK_END)) < 0) {
            net_spool_discard(&srv_->spool, &f);
            snprintf(why, sizeof why, "cannot write the file meta header in %s: %s",
                     srv_->spool.staging, c.bad() ? c.text() : strerror(errno));
            return refuse(req, pid, verdict(NET_STATUS_RESOURCES, NET_REFUSE_WRITE, EN_NET_ERR,
                                            "receiver cannot write its staging file", why));
        }
        NetCapStream out(f.fd, (uint64_t)start, cfg_.max_instance_bytes);
        c = DIMSE_receiveDataSetInFile(w_->assoc, getConfig().getDIMSEBlockingMode(),
                                       (int)getConfig().getDIMSETimeout(), &dpid, &out, NULL,
                                       NULL);
        const NetCapConsumer &cc = out.consumer();
        if (c.bad()) {
            /* OUTOFRESOURCES: our stream refused a write and DIMSE drained
             * the rest of the data set; the association goes on. */
            const bool drained = c.module() == OFM_dcmnet && c.code() == DIMSEC_OUTOFRESOURCES;
            net_spool_discard(&srv_->spool, &f);
            if (drained && cc.over()) {
                snprintf(why, sizeof why, "an instance of %s is larger than %.0f MiB ([limits] "
                         "max_file_mb)", cls, (double)cfg_.max_instance_bytes / NET_MIB);
                refused(NET_REFUSE_TOO_LARGE, EN_NET_WARN, why);
                return respond(req, pid, NET_STATUS_RESOURCES,
                               "instance larger than the receiver's limit");
            }
            if (drained && cc.error()) {
                snprintf(why, sizeof why, "writing in %s failed: %s", srv_->spool.staging,
                         strerror(cc.error()));
                refused(NET_REFUSE_WRITE, EN_NET_ERR, why);
                return respond(req, pid, NET_STATUS_RESOURCES,
                               "receiver cannot write its staging file");
            }
            net_log(srv_, EN_NET_WARN, EN_NET_EV_CUT, peer_, "association from AE '%s' (%s): "
                    "transfer of an instance of %s cut after %.1f MiB (%s): nothing of it kept",
                    peer_, host_, cls, (double)cc.written() / NET_MIB,
                    w_->cut ? "cut by the receiver" : c.text());
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
                refused(NET_REFUSE_NOT_WHOLE, EN_NET_NOTICE, e.msg);
                return respond(req, pid, NET_STATUS_NOT_WHOLE,
                               "data set is not whole or not safe to parse");
            }
            refused(NET_REFUSE_WRITE, EN_NET_ERR, e.msg);
            return respond(req, pid, NET_STATUS_RESOURCES, "receiver cannot store the instance");
        }
        stored_++;
        bytes_ += cc.written();
        {
            std::lock_guard<std::mutex> l(srv_->mu);
            srv_->stats.stored++;
            srv_->stats.bytes += cc.written();
        }
        net_log(srv_, EN_NET_DEBUG, EN_NET_EV_STORED, peer_, "association from AE '%s': an "
                "instance of %s (%.1f MiB) is in the inbox", peer_, cls,
                (double)cc.written() / NET_MIB);
        return respond(req, pid, STATUS_Success, NULL);
    }
};

/* timeout_s for every read and write on the association's socket: the
 * DIMSE timeout alone only bounds the wait for the next PDU, not a peer
 * that stops in the middle of one. */
static void net_socket_timeouts(T_ASC_Association *a, int seconds)
{
    DcmTransportConnection *tc = a->DULassociation ? DUL_getTransportConnection(a->DULassociation)
                                                   : NULL;
    struct timeval tv = { seconds, 0 };

    if (!tc)
        return;
    setsockopt(net_socket(tc), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(net_socket(tc), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void net_run_association(net_worker *w)
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
