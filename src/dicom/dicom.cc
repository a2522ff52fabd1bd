/*
 * dicom.cc - en_dicom_read (see en_dicom.h): the one place where echonetd
 * touches DCMTK.  It turns an echo DICOM file into 8-bit frames plus the
 * facts downstream stages need, and refuses hostile input cheaply.
 *
 * Flow: stat the file (size limit), walk its structure without DCMTK
 * (en_dicom_scan: refuses deep nesting, zero-filled and truncated files,
 * and tells Part 10 from a raw data set), let DCMTK parse the dataset with large values left on disk (so a lying or huge
 * PixelData costs nothing yet), check the image attributes, the limits and
 * that the pixel data really holds the frames the header promises, and only
 * then decode with DicomImage a few frames at a time straight into the
 * caller's en_frames.
 *
 * Decoding rules (what callers and the pixel tests rely on):
 * - Monochrome output is grey, channels=1; MONOCHROME1 is inverted so that it
 *   looks like MONOCHROME2.  Everything else is RGB, channels=3 (YBR is
 *   converted, PALETTE COLOR goes through its LUT).
 * - No VOI window and no modality LUT are applied: stored values are mapped
 *   linearly from their full stored-bit range to 0..255 (value v of an
 *   unsigned BitsStored=b image becomes round(v * 255 / (2^b - 1)); signed
 *   data maps -2^(b-1)..2^(b-1)-1 likewise).  For 8-bit data this is the
 *   identity.
 * - A header that promises more frames than the pixel data holds is refused
 *   with EN_EFORMAT, natively (byte count) and encapsulated (fragment count):
 *   we never pad with black frames.
 * - JPEG Baseline goes through libjpeg-turbo (dicom_jpeg.cc: about 4x
 *   faster, the same bytes as DCMTK's codec); what it declines (several
 *   fragments per frame, unusual sampling, damaged streams...) falls back
 *   to DicomImage for the whole file.
 * - JPEG 2000 goes through OpenJPEG (dicom_j2k.cc) when the build has it;
 *   without it, and for every syntax nobody here decodes, the file is refused
 *   with EN_EUNSUPPORTED naming the syntax.
 * - A JPEG/JPEG-LS stream whose own size differs from Rows x Columns is
 *   refused (DCMTK's decoder would pad it with black).
 *
 * DCMTK never throws on purpose, but C++ allocation can; every exception is
 * caught at the C boundary.  DCMTK's own logging is switched off: it would
 * write to stderr and could echo attribute values.
 */
#include "dicom_int.h"

#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmimage/diregist.h" /* colour support for DicomImage */
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "en_dicom_scan.h"
}

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <mutex>
#include <new>

/* Values above this stay on disk after parsing; read on demand. */
#define DCM_LAZY_BYTES 4096u
/* Upper bound of DicomImage's working set per chunk of frames. */
#define DCM_CHUNK_BYTES (32u << 20)
/* Decoded bytes per byte of file, beyond a first allowance: a header must
 * not make us allocate (and the decoder fill) far more than the file can
 * hold.  Real files stay well below: 80 for the smallest JPEG 2000 file of
 * pydicom's corpus, 8-25 for the generator's echo loops in JPEG, JPEG-LS
 * and JPEG 2000 (docs/architecture.md); an 89 KB file declaring 255 frames
 * of 2048x2048 would need 12,000. */
#define DCM_DECODE_RATIO 256
#define DCM_DECODE_ALLOWANCE (64 << 20)

extern "C" void en_dicom_limits_default(en_dicom_limits *lim)
{
    lim->max_frames = 2000;
    lim->max_rows = 2048;
    lim->max_cols = 2048;
    lim->max_file_bytes = (uint64_t)2 << 30;
    lim->max_pixel_bytes = (uint64_t)1 << 30;
    lim->jpeg_via_dcmtk = 0;
    lim->threads = 0;
}

extern "C" const char *en_fps_source_name(en_fps_source s)
{
    switch (s) {
    case EN_FPS_CINE_RATE: return "CineRate";
    case EN_FPS_FRAME_TIME: return "FrameTime";
    case EN_FPS_FRAME_TIME_VECTOR: return "FrameTimeVector";
    case EN_FPS_RECOMMENDED: return "RecommendedDisplayFrameRate";
    case EN_FPS_DEFAULT: return "default";
    }
    return "unknown";
}

/* ---- one-time DCMTK set-up --------------------------------------------- */

static std::once_flag dcm_once;
static bool dcm_dict_ok;

/* Codec registration and logger configuration are process-global and not
 * thread-safe in DCMTK, so they happen exactly once. */
static void dcm_init_once(void)
{
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
    dcm_dict_ok = dcmDataDict.isDictionaryLoaded();
}

/* ---- reading the file -------------------------------------------------- */

static int dcm_stat(dcm_ctx *c)
{
    struct stat st;

    if (stat(c->path, &st) != 0)
        return en_err_set(c->err, EN_EIO, "%s: cannot open: %s (check that the file exists and is readable)",
                          c->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return en_err_set(c->err, EN_EIO, "%s: not a regular file (give the path of a DICOM file)", c->path);
    c->file_bytes = (uint64_t)st.st_size;
    if (c->file_bytes == 0)
        return en_err_set(c->err, EN_EFORMAT, "%s: not a DICOM file (the file is empty)", c->path);
    if (c->file_bytes > c->lim->max_file_bytes)
        return en_err_set(c->err, EN_ELIMIT,
                          "%s: file size %llu bytes exceeds the limit max_file_bytes=%llu "
                          "(raise [limits] max_file_mb in echonetd.conf to accept it)",
                          c->path, (unsigned long long)c->file_bytes,
                          (unsigned long long)c->lim->max_file_bytes);
    return EN_OK;
}

/* The structure walk (scan.c, en_dicom_scan.h) before DCMTK parses
 * anything.  DCMTK parses sequences recursively (a file nested 7000 deep
 * overflows its stack) and walks zero bytes eight at a time (a sparse 2 GiB
 * file holds it for minutes), so files the walk refuses never reach it; nor
 * do files whose elements cannot be walked to the end, since DCMTK accepts
 * some of those and would parse on past where the walk stopped counting.
 * It also tells a Part 10 file (DICM at offset 128) from a raw data set. */
static int dcm_scan(dcm_ctx *c)
{
    en_dicom_scan sc;
    en_err e;

    if (en_dicom_scan_file(AT_FDCWD, c->path, &sc, &e) != EN_OK)
        return en_err_set(c->err, e.code, "%s (check that the file exists and is readable)", e.msg);
    c->has_dicm = sc.part10 != 0;
    if (sc.refuse == EN_ELIMIT)
        return en_err_set(c->err, EN_ELIMIT, "%s: %s: refused before parsing, since no echo file "
                          "comes near this; the file is damaged or hostile", c->path, sc.detail);
    if (sc.refuse)
        return en_err_set(c->err, sc.refuse, "%s: not a DICOM file (%s)", c->path, sc.detail);
    switch (sc.state) {
    case EN_SCAN_COMPLETE:
        return EN_OK;
    case EN_SCAN_TRUNCATED:
        return en_err_set(c->err, EN_EFORMAT, "%s: truncated DICOM file (%s; stops at byte %lld of "
                          "%lld): the file is incomplete; send or export it again",
                          c->path, sc.detail, sc.end, sc.size);
    case EN_SCAN_UNKNOWN:
        break;
    }
    if (!sc.part10)
        return en_err_set(c->err, EN_EFORMAT, "%s: not a DICOM file (%s)", c->path, sc.detail);
    return en_err_set(c->err, EN_EFORMAT, "%s: malformed DICOM file (%s): the file is damaged; "
                      "export it again", c->path, sc.detail);
}

/* A meta header may name a syntax DCMTK does not know at all; then parsing
 * fails and the honest answer is "unsupported", not "malformed". */
static int dcm_unknown_meta_xfer(dcm_ctx *c)
{
    OFString uid;
    DcmMetaInfo *meta = c->ff.getMetaInfo();

    if (!meta || !dcm_get_str(meta, DCM_TransferSyntaxUID, 0, uid))
        return EN_OK;
    if (DcmXfer(uid.c_str()).getXfer() != EXS_Unknown)
        return EN_OK;
    dcm_copy_str(c->info->transfer_syntax_uid, sizeof c->info->transfer_syntax_uid, uid.c_str());
    return en_err_set(c->err, EN_EUNSUPPORTED,
                      "%s: transfer syntax %s is unknown to the DICOM decoder: re-export the study "
                      "uncompressed or with JPEG, JPEG-LS or RLE compression",
                      c->path, c->info->transfer_syntax_uid);
}

/* A raw dataset (no preamble) is only believed when it parses and carries at
 * least one attribute an image must have. */
static bool dcm_looks_like_image(DcmDataset *ds)
{
    return ds->tagExists(DCM_SOPClassUID) || ds->tagExists(DCM_PixelData) ||
           ds->tagExists(DCM_Rows);
}

static int dcm_load(dcm_ctx *c)
{
    OFCondition cond = c->ff.loadFile(OFFilename(c->path), EXS_Unknown, EGL_noChange,
                                      DCM_LAZY_BYTES, ERM_autoDetect);
    c->ds = c->ff.getDataset();
    if (cond.good() && c->ds && (c->has_dicm || dcm_looks_like_image(c->ds)))
        return EN_OK;
    if (cond == EC_MemoryExhausted)
        return en_err_set(c->err, EN_ENOMEM, "%s: out of memory while parsing the DICOM file", c->path);
    if (int rc = dcm_unknown_meta_xfer(c))
        return rc;
    if (!c->has_dicm && (!c->ds || !dcm_looks_like_image(c->ds)))
        return en_err_set(c->err, EN_EFORMAT,
                          "%s: not a DICOM file (no DICM preamble and no parsable dataset)", c->path);
    return en_err_set(c->err, EN_EFORMAT,
                      "%s: malformed or truncated DICOM file (parser: %s): the file is damaged or "
                      "incomplete; send or export it again", c->path, cond.text());
}

/* ---- what kind of file ------------------------------------------------- */

static bool dcm_xfer_supported(E_TransferSyntax x)
{
    switch (x) {
    case EXS_LittleEndianImplicit: case EXS_LittleEndianExplicit: case EXS_BigEndianExplicit:
    case EXS_DeflatedLittleEndianExplicit:
    case EXS_JPEGProcess1: case EXS_JPEGProcess2_4: case EXS_JPEGProcess14: case EXS_JPEGProcess14SV1:
    case EXS_JPEGLSLossless: case EXS_JPEGLSLossy:
    case EXS_RLELossless:
        return true;
    case EXS_JPEG2000LosslessOnly: case EXS_JPEG2000:
        return dcm_j2k_available();
    default:
        return false;
    }
}

extern "C" int en_dicom_syntax_supported(const char *uid)
{
    return uid && dcm_xfer_supported(DcmXfer(uid).getXfer()) ? 1 : 0;
}

static int dcm_check_xfer(dcm_ctx *c)
{
    DcmXfer x(c->xfer);
    en_dicom_info *info = c->info;

    dcm_copy_str(info->transfer_syntax_uid, sizeof info->transfer_syntax_uid, x.getXferID());
    dcm_copy_str(info->transfer_syntax_name, sizeof info->transfer_syntax_name, x.getXferName());
    if (dcm_xfer_supported(c->xfer))
        return EN_OK;
    return en_err_set(c->err, EN_EUNSUPPORTED,
                      "%s: transfer syntax %s (%s) is not supported: re-export the study uncompressed "
                      "or with JPEG, JPEG-LS or RLE compression", c->path,
                      info->transfer_syntax_name, info->transfer_syntax_uid);
}

static bool dcm_is_sc(const char *uid)
{
    static const char *const sc[] = {
        UID_SecondaryCaptureImageStorage,
        UID_MultiframeSingleBitSecondaryCaptureImageStorage,
        UID_MultiframeGrayscaleByteSecondaryCaptureImageStorage,
        UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage,
        UID_MultiframeTrueColorSecondaryCaptureImageStorage,
    };
    for (const char *s : sc)
        if (strcmp(uid, s) == 0)
            return true;
    return false;
}

/* Readable names for the classes an echo archive holds; DCMTK's own
 * (keyword-like) name for the rest. */
static const char *dcm_sop_name(const char *uid)
{
    if (strcmp(uid, UID_UltrasoundMultiframeImageStorage) == 0)
        return "US Multi-frame Image Storage";
    if (strcmp(uid, UID_UltrasoundImageStorage) == 0)
        return "US Image Storage";
    if (strcmp(uid, UID_SecondaryCaptureImageStorage) == 0)
        return "Secondary Capture Image Storage";
    return dcmFindNameOfUID(uid, "unknown SOP class");
}

/* Echo SOP classes pass silently; anything else with pixels passes with a
 * warning so operators can see why a loop may look odd. */
static void dcm_read_sop(dcm_ctx *c)
{
    OFString uid, mod;
    en_dicom_info *info = c->info;
    const char *name;

    if (!dcm_get_str(c->ds, DCM_SOPClassUID, 0, uid)) {
        dcm_warn(info, "no SOP Class UID: treated as an image because it has pixel data");
        dcm_copy_str(info->sop_class_name, sizeof info->sop_class_name, "unknown");
    } else {
        dcm_copy_str(info->sop_class_uid, sizeof info->sop_class_uid, uid.c_str());
        name = dcm_sop_name(info->sop_class_uid);
        dcm_copy_str(info->sop_class_name, sizeof info->sop_class_name, name);
        if (dcm_is_sc(info->sop_class_uid))
            dcm_warn(info, "SOP class %s (%s) is a secondary capture, not an ultrasound acquisition",
                     info->sop_class_name, info->sop_class_uid);
        else if (strcmp(info->sop_class_uid, UID_UltrasoundMultiframeImageStorage) != 0 &&
                 strcmp(info->sop_class_uid, UID_UltrasoundImageStorage) != 0)
            dcm_warn(info, "SOP class %s (%s) is not an ultrasound image; converted anyway",
                     info->sop_class_name, info->sop_class_uid);
    }
    if (dcm_get_str(c->ds, DCM_Modality, 0, mod))
        dcm_copy_str(info->modality, sizeof info->modality, mod.c_str());
}

static int dcm_check_pixeldata(dcm_ctx *c)
{
    DcmElement *el = NULL;

    /* Encapsulated pixel data only has a length in its own syntax. */
    if (c->ds->findAndGetElement(DCM_PixelData, el, OFFalse).bad() || !el || el->getLength(c->xfer) == 0)
        return en_err_set(c->err, EN_ENOTIMAGE,
                          "%s: no pixel data (SOP class %s): not an image, nothing to convert",
                          c->path, c->info->sop_class_uid[0] ? c->info->sop_class_uid : "unknown");
    return EN_OK;
}

/* ---- image attributes -------------------------------------------------- */

/* A required whole number in [lo, hi]; names the attribute when not. */
static int dcm_req_int(dcm_ctx *c, const DcmTagKey &tag, const char *name, double lo, double hi, int *out)
{
    double v;

    if (!dcm_get_num(c->ds, tag, 0, &v))
        return en_err_set(c->err, EN_EFORMAT, "%s: %s is missing or not a number: the image "
                          "header is incomplete; export the file again", c->path, name);
    if (v != (double)(long long)v || v < lo || v > hi)
        return en_err_set(c->err, EN_EFORMAT, "%s: %s=%.0f is invalid (expected %.0f..%.0f)",
                          c->path, name, v, lo, hi);
    *out = (int)v;
    return EN_OK;
}

static int dcm_limit(dcm_ctx *c, const char *what, double value, const char *limit, uint64_t max)
{
    if (value <= (double)max)
        return EN_OK;
    /* Byte limits are configured in MiB: name the key the user must edit. */
    const char *key = strcmp(limit, "max_pixel_bytes") == 0 ? "max_pixel_mb" : limit;
    return en_err_set(c->err, EN_ELIMIT, "%s: %.0f %s exceed the limit %s=%llu "
                      "(raise [limits] %s in echonetd.conf to accept it)",
                      c->path, value, what, limit, (unsigned long long)max, key);
}

/* NumberOfFrames is an IS string: absent means one frame. */
static int dcm_read_frames(dcm_ctx *c, double *frames)
{
    *frames = 1;
    if (!c->ds->tagExists(DCM_NumberOfFrames))
        return EN_OK;
    if (!dcm_get_num(c->ds, DCM_NumberOfFrames, 0, frames) || *frames != (double)(long long)*frames ||
        *frames < 1)
        return en_err_set(c->err, EN_EFORMAT, "%s: NumberOfFrames is not a positive whole number: "
                          "the image header is damaged; export the file again", c->path);
    return EN_OK;
}

static int dcm_geometry(dcm_ctx *c)
{
    en_dicom_info *info = c->info;
    double frames;
    int rc;

    if ((rc = dcm_req_int(c, DCM_Rows, "Rows", 1, 65535, &info->rows)) ||
        (rc = dcm_req_int(c, DCM_Columns, "Columns", 1, 65535, &info->cols)) ||
        (rc = dcm_read_frames(c, &frames)))
        return rc;
    if ((rc = dcm_limit(c, "rows", info->rows, "max_rows", c->lim->max_rows)) ||
        (rc = dcm_limit(c, "columns", info->cols, "max_cols", c->lim->max_cols)) ||
        (rc = dcm_limit(c, "frames", frames, "max_frames", c->lim->max_frames)))
        return rc;
    if (frames > 2147483647.0)
        return en_err_set(c->err, EN_ELIMIT, "%s: NumberOfFrames=%.0f is out of range", c->path, frames);
    info->frames = (int)frames;
    return EN_OK;
}

static bool pi_is(const char *pi, const char *name)
{
    return strcmp(pi, name) == 0;
}

/* Photometric interpretation, samples and bit depth must agree with each
 * other before DicomImage sees them. */
static int dcm_pixel_format(dcm_ctx *c)
{
    en_dicom_info *info = c->info;
    OFString pi;
    const char *p;
    int spp_expect, rc, high_bit, pixel_rep;

    if (!dcm_get_str(c->ds, DCM_PhotometricInterpretation, 0, pi))
        return en_err_set(c->err, EN_EFORMAT, "%s: PhotometricInterpretation is missing: the image "
                          "header is incomplete; export the file again", c->path);
    dcm_copy_str(info->photometric, sizeof info->photometric, pi.c_str());
    p = info->photometric;
    if (pi_is(p, "MONOCHROME1") || pi_is(p, "MONOCHROME2") || pi_is(p, "PALETTE COLOR"))
        spp_expect = 1;
    else if (pi_is(p, "RGB") || pi_is(p, "YBR_FULL") || pi_is(p, "YBR_FULL_422"))
        spp_expect = 3;
    else if ((pi_is(p, "YBR_ICT") || pi_is(p, "YBR_RCT")) && dcm_is_j2k(c->xfer))
        spp_expect = 3; /* JPEG 2000's own colour transforms; OpenJPEG undoes them */
    else
        return en_err_set(c->err, EN_EUNSUPPORTED, "%s: photometric interpretation %s is not supported "
                          "(supported: MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR)",
                          c->path, p);
    info->channels = pi_is(p, "MONOCHROME1") || pi_is(p, "MONOCHROME2") ? 1 : 3;

    if ((rc = dcm_req_int(c, DCM_SamplesPerPixel, "SamplesPerPixel", 1, 4, &info->samples_per_pixel)))
        return rc;
    if (info->samples_per_pixel != spp_expect)
        return en_err_set(c->err, EN_EFORMAT, "%s: SamplesPerPixel=%d does not match photometric "
                          "interpretation %s (expected %d)", c->path, info->samples_per_pixel, p, spp_expect);
    if ((rc = dcm_req_int(c, DCM_BitsAllocated, "BitsAllocated", 1, 64, &info->bits_allocated)))
        return rc;
    if (info->bits_allocated != 8 && info->bits_allocated != 16)
        return en_err_set(c->err, EN_EUNSUPPORTED, "%s: BitsAllocated=%d is not supported (only 8 and 16)",
                          c->path, info->bits_allocated);
    if ((rc = dcm_req_int(c, DCM_BitsStored, "BitsStored", 1, info->bits_allocated, &info->bits_stored)))
        return rc;
    /* HighBit and PixelRepresentation have one sane value when absent. */
    if (dcm_req_int(c, DCM_HighBit, "HighBit", info->bits_stored - 1, info->bits_allocated - 1, &high_bit)) {
        en_err_clear(c->err);
        dcm_warn(info, "HighBit missing or inconsistent with BitsStored");
    }
    if (c->ds->tagExists(DCM_PixelRepresentation) &&
        (rc = dcm_req_int(c, DCM_PixelRepresentation, "PixelRepresentation", 0, 1, &pixel_rep)))
        return rc;
    info->planar_configuration = 0;
    if (info->samples_per_pixel == 3 && c->ds->tagExists(DCM_PlanarConfiguration) &&
        (rc = dcm_req_int(c, DCM_PlanarConfiguration, "PlanarConfiguration", 0, 1,
                          &info->planar_configuration)))
        return rc;
    return EN_OK;
}

/* ---- does the pixel data hold what the header promises? ---------------- */

static int dcm_check_native(dcm_ctx *c, DcmElement *el)
{
    const en_dicom_info *info = c->info;
    /* Native YBR_FULL_422 stores two samples per pixel (Y Y Cb Cr). */
    uint64_t samples = pi_is(info->photometric, "YBR_FULL_422") ? 2 : (uint64_t)info->samples_per_pixel;
    uint64_t need = (uint64_t)info->frames * (uint64_t)info->rows * (uint64_t)info->cols * samples *
                    (uint64_t)(info->bits_allocated / 8);
    uint64_t have = el->getLength();

    if (have == DCM_UndefinedLength)
        return en_err_set(c->err, EN_EFORMAT, "%s: native PixelData has undefined length: the file is "
                          "malformed; export it again", c->path);
    if (have < need)
        return en_err_set(c->err, EN_EFORMAT, "%s: PixelData holds %llu bytes but %d frame(s) of %dx%d need "
                          "%llu: NumberOfFrames or the image size is wrong, or the file is truncated",
                          c->path, (unsigned long long)have, info->frames, info->cols, info->rows,
                          (unsigned long long)need);
    /* Deflated files legitimately hold more than their size on disk. */
    if (have > c->file_bytes && c->xfer != EXS_DeflatedLittleEndianExplicit)
        return en_err_set(c->err, EN_EFORMAT, "%s: PixelData claims %llu bytes but the file has only %llu: "
                          "the file is truncated", c->path, (unsigned long long)have,
                          (unsigned long long)c->file_bytes);
    return EN_OK;
}

/* Frame size from a JPEG or JPEG-LS stream's start-of-frame header; false
 * when there is none before the scan data (leave it to the decoder). */
static bool dcm_jpeg_dims(const Uint8 *p, size_t n, unsigned *w, unsigned *h)
{
    size_t i = 2;

    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return false;
    while (i + 4 <= n) {
        unsigned m, len;
        if (p[i] != 0xFF)
            return false;
        m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        len = (unsigned)p[i + 2] << 8 | p[i + 3];
        bool sof = (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;
        if (sof) {
            if (i + 9 > n || len < 7)
                return false;
            *h = (unsigned)p[i + 5] << 8 | p[i + 6];
            *w = (unsigned)p[i + 7] << 8 | p[i + 8];
            return true;
        }
        if (m == 0xDA || m == 0xD9 || len < 2)
            return false;
        i += 2 + len;
    }
    return false;
}

static bool dcm_is_jpeg(E_TransferSyntax x)
{
    return x == EXS_JPEGProcess1 || x == EXS_JPEGProcess2_4 || x == EXS_JPEGProcess14 ||
           x == EXS_JPEGProcess14SV1 || x == EXS_JPEGLSLossless || x == EXS_JPEGLSLossy;
}

/* DCMTK's JPEG decoder fills a frame whose stream is smaller than Rows x
 * Columns with black instead of failing, so compare the first stream's own
 * size with the header. */
static int dcm_check_jpeg_size(dcm_ctx *c, DcmPixelSequence *seq)
{
    DcmPixelItem *item = NULL;
    Uint8 *data = NULL;
    unsigned w = 0, h = 0;

    if (!dcm_is_jpeg(c->xfer) || seq->getItem(item, 1).bad() || !item ||
        item->getUint8Array(data).bad() || !data)
        return EN_OK;
    if (!dcm_jpeg_dims(data, item->getLength(), &w, &h) || h == 0 /* size given later by DNL */)
        return EN_OK;
    if ((int)w == c->info->cols && (int)h == c->info->rows)
        return EN_OK;
    return en_err_set(c->err, EN_EFORMAT, "%s: the compressed frame is %ux%u but Columns x Rows say %dx%d: "
                      "the header lies; export the file again", c->path, w, h, c->info->cols, c->info->rows);
}

static uint32_t dcm_le32(const Uint8 *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* RLE Lossless (PS3.5 Annex G): each frame is one fragment that opens with
 * a 64-byte header, the segment count (1..15) and each segment's offset,
 * the first 64, ascending.  DCMTK's RLE decoder follows the offsets without
 * checking them against the fragment (an offset past its end crashed the
 * reader: tests/fuzz/crashes/dicom-read/rle-segment-offset-past-fragment),
 * so every header is checked here first. */
static int dcm_check_rle(dcm_ctx *c, DcmPixelSequence *seq, unsigned long fragments)
{
    if (c->xfer != EXS_RLELossless)
        return EN_OK;
    if (fragments != (unsigned long)c->info->frames)
        return en_err_set(c->err, EN_EFORMAT, "%s: RLE PixelData holds %lu fragments for %d frame(s); "
                          "RLE needs exactly one per frame: the file is malformed; export it again",
                          c->path, fragments, c->info->frames);
    for (unsigned long i = 1; i <= fragments; i++) {
        DcmPixelItem *item = NULL;
        Uint8 *data = NULL;
        uint32_t len, nseg, prev = 0;

        if (seq->getItem(item, i).bad() || !item || item->getUint8Array(data).bad() || !data)
            return en_err_set(c->err, EN_EFORMAT, "%s: RLE frame %lu cannot be read: the pixel data is "
                              "damaged", c->path, i);
        len = item->getLength();
        nseg = len >= 64 ? dcm_le32(data) : 0;
        if (nseg < 1 || nseg > 15)
            return en_err_set(c->err, EN_EFORMAT, "%s: RLE frame %lu has no valid header (%u segments, "
                              "%u bytes): the pixel data is damaged or hostile", c->path, i, nseg, len);
        for (uint32_t k = 0; k < nseg; k++) {
            uint32_t off = dcm_le32(data + 4 + 4 * k);
            if ((k == 0 && off != 64) || (k > 0 && off <= prev) || off >= len)
                return en_err_set(c->err, EN_EFORMAT, "%s: RLE frame %lu: segment %u starts at byte %u of a "
                                  "%u-byte fragment: the pixel data is damaged or hostile",
                                  c->path, i, k + 1, off, len);
            prev = off;
        }
    }
    return EN_OK;
}

/* JPEG family: the marker segments ahead of the first scan.  DCMTK's JPEG
 * codec looks for the bit depth by walking them and never returns from a
 * stream broken there (tests/fuzz/crashes/dicom-read/jpeg-baseline-scan-loop.dcm
 * held `convert` until killed), so each frame's first fragment is walked
 * here first: SOI, then markers with lengths inside the fragment, up to the
 * first SOS.  A fragment that ends before its SOS (headers split across
 * fragments) is left to the decoder. */
static int dcm_check_jpeg_markers(dcm_ctx *c, DcmPixelSequence *seq, unsigned long fragments)
{
    /* With one fragment per frame every fragment starts a frame; otherwise
     * only the first is known to. */
    unsigned long last = fragments == (unsigned long)c->info->frames ? fragments : 1;

    if (!dcm_is_jpeg(c->xfer))
        return EN_OK;
    for (unsigned long i = 1; i <= last; i++) {
        DcmPixelItem *item = NULL;
        Uint8 *d = NULL;
        uint32_t len, k = 2;

        if (seq->getItem(item, i).bad() || !item || item->getUint8Array(d).bad() || !d)
            continue;   /* an empty or unreadable fragment is the decoder's to refuse */
        len = item->getLength();
        if (len < 2 || d[0] != 0xff || d[1] != 0xd8)
            return en_err_set(c->err, EN_EFORMAT, "%s: compressed frame %lu does not start with a JPEG "
                              "SOI marker: the pixel data is damaged or hostile", c->path, i);
        while (k + 2 <= len) {
            uint8_t m;
            uint32_t seg;
            if (d[k] != 0xff)
                return en_err_set(c->err, EN_EFORMAT, "%s: compressed frame %lu: no JPEG marker at byte %u "
                                  "before its scan: the pixel data is damaged or hostile", c->path, i, k);
            m = d[k + 1];
            if (m == 0xff) {            /* fill byte */
                k++;
                continue;
            }
            if (m == 0xda)              /* SOS: the headers are whole */
                break;
            if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {   /* markers without a length */
                k += 2;
                continue;
            }
            if (k + 4 > len)
                break;
            seg = (uint32_t)d[k + 2] << 8 | d[k + 3];
            if (seg < 2 || seg > len - k - 2)
                return en_err_set(c->err, EN_EFORMAT, "%s: compressed frame %lu: JPEG marker FF%02X at byte "
                                  "%u has length %u, outside the fragment: the pixel data is damaged or "
                                  "hostile", c->path, i, m, k, seg);
            k += 2 + seg;
        }
    }
    return EN_OK;
}

/* Each frame needs at least one fragment; fewer means NumberOfFrames lies
 * or the file lost its tail. */
static int dcm_check_encapsulated(dcm_ctx *c, DcmElement *el)
{
    DcmPixelData *pd = dynamic_cast<DcmPixelData *>(el);
    DcmPixelSequence *seq = NULL;
    unsigned long fragments;
    int rc;

    if (!pd || pd->getEncapsulatedRepresentation(c->xfer, NULL, seq).bad() || !seq)
        return en_err_set(c->err, EN_EFORMAT, "%s: compressed PixelData is not encapsulated as the transfer "
                          "syntax requires: the file is malformed; export it again", c->path);
    fragments = seq->card() > 0 ? seq->card() - 1 : 0; /* item 0: offset table */
    if (fragments < (unsigned long)c->info->frames)
        return en_err_set(c->err, EN_EFORMAT, "%s: NumberOfFrames=%d but the compressed PixelData holds only "
                          "%lu fragment(s): the header lies or the file is truncated",
                          c->path, c->info->frames, fragments);
    if ((rc = dcm_check_rle(c, seq, fragments)) != EN_OK ||
        (rc = dcm_check_jpeg_markers(c, seq, fragments)) != EN_OK)
        return rc;
    return dcm_check_jpeg_size(c, seq);
}

static int dcm_check_sizes(dcm_ctx *c)
{
    const en_dicom_info *info = c->info;
    DcmElement *el = NULL;
    double out_bytes = (double)info->frames * info->rows * info->cols * info->channels;
    int rc;

    if ((rc = dcm_limit(c, "decoded bytes", out_bytes, "max_pixel_bytes", c->lim->max_pixel_bytes)))
        return rc;
    if (out_bytes > (double)DCM_DECODE_RATIO * (double)c->file_bytes + (double)DCM_DECODE_ALLOWANCE)
        return en_err_set(c->err, EN_ELIMIT, "%s: %d frame(s) of %dx%d would decode to %.0f bytes "
                          "from a file of %llu bytes, more than %d per byte of file plus %d MiB: the "
                          "header promises far more image than the file holds; the file is damaged "
                          "or hostile", c->path, info->frames, info->cols, info->rows, out_bytes,
                          (unsigned long long)c->file_bytes, DCM_DECODE_RATIO,
                          DCM_DECODE_ALLOWANCE >> 20);
    if (c->ds->findAndGetElement(DCM_PixelData, el, OFFalse).bad() || !el)
        return en_err_set(c->err, EN_ENOTIMAGE, "%s: no pixel data", c->path);
    if (DcmXfer(c->xfer).isEncapsulated())
        return dcm_check_encapsulated(c, el);
    return dcm_check_native(c, el);
}

/* ---- decoding ---------------------------------------------------------- */

static int dcm_image_status(dcm_ctx *c, const DicomImage &img, int frame)
{
    EI_Status st = img.getStatus();
    int code;

    if (st == EIS_Normal)
        return EN_OK;
    code = st == EIS_MemoryFailure ? EN_ENOMEM : st == EIS_NotSupportedValue ? EN_EUNSUPPORTED : EN_EFORMAT;
    return en_err_set(c->err, code, "%s: cannot decode the image near frame %d (%s): the pixel data is "
                      "damaged or uses an unsupported encoding", c->path, frame + 1, DicomImage::getString(st));
}

static int dcm_copy_chunk(dcm_ctx *c, DicomImage &img, int done)
{
    en_frames *f = c->frames;
    size_t fb = en_frames_frame_bytes(f);
    unsigned long n = img.getFrameCount();

    if (n == 0 || img.getFirstFrame() != (unsigned long)done || done + (long)n > f->nframes ||
        img.getWidth() != (unsigned long)f->cols || img.getHeight() != (unsigned long)f->rows ||
        img.getOutputDataSize(8) != fb)
        return en_err_set(c->err, EN_ECODEC, "%s: the decoder returned frames %lu..%lu of unexpected size "
                          "(internal inconsistency)", c->path, img.getFirstFrame() + 1,
                          img.getFirstFrame() + n);
    for (unsigned long k = 0; k < n; k++) {
        uint8_t *dst = en_frames_frame(f, done + (int)k);
        if (!img.getOutputData(dst, fb, 8, k, 0)) {
            int rc = dcm_image_status(c, img, done + (int)k);
            return rc ? rc : en_err_set(c->err, EN_EFORMAT, "%s: cannot decode frame %d: the pixel data "
                                        "is damaged", c->path, done + (int)k + 1);
        }
        if (c->invert)
            for (size_t i = 0; i < fb; i++)
                dst[i] = (uint8_t)(255 - dst[i]);
    }
    return (int)n;
}

static int dcm_decode(dcm_ctx *c)
{
    en_dicom_info *info = c->info;
    size_t per_frame = (size_t)info->rows * info->cols * info->samples_per_pixel * 4;
    unsigned long chunk = DCM_CHUNK_BYTES / per_frame;
    const unsigned long flags = CIF_UsePartialAccessToPixelData | CIF_NeverAccessEmbeddedOverlays |
                                CIF_IgnoreModalityTransformation;
    int rc, done = 0;

    if (chunk < 1)
        chunk = 1;
    if (chunk > (unsigned long)info->frames)
        chunk = info->frames;
    if ((rc = en_frames_alloc(c->frames, info->frames, info->rows, info->cols, info->channels)))
        return en_err_set(c->err, rc, "%s: cannot allocate %d frames of %dx%d: out of memory",
                          c->path, info->frames, info->cols, info->rows);
    if (dcm_is_j2k(c->xfer))
        return dcm_decode_j2k(c);
    if (!c->lim->jpeg_via_dcmtk && (rc = dcm_decode_jpeg_turbo(c)) != DCM_JPEG_DECLINED)
        return rc;
    DicomImage img(c->ds, c->xfer, flags, 0, chunk);
    if ((rc = dcm_image_status(c, img, 0)))
        return rc;
    if ((img.isMonochrome() ? 1 : 3) != info->channels)
        return en_err_set(c->err, EN_ECODEC, "%s: the decoder disagrees about the colour model of %s",
                          c->path, info->photometric);
    /* DicomImage's own MONOCHROME1 inversion is off by one on half the
     * values; take the stored polarity and invert exactly instead. */
    if (img.isMonochrome() && !img.setPresentationLutShape(ESP_Identity))
        return en_err_set(c->err, EN_ECODEC, "%s: the decoder refused an identity presentation LUT", c->path);
    c->invert = pi_is(info->photometric, "MONOCHROME1");
    for (;;) {
        int n = dcm_copy_chunk(c, img, done);
        if (n < 0)
            return n;
        done += n;
        if (done >= info->frames)
            return EN_OK;
        if (!img.processNextFrames(chunk)) {
            rc = dcm_image_status(c, img, done);
            return rc ? rc : en_err_set(c->err, EN_EFORMAT, "%s: cannot decode frame %d of %d: the pixel "
                                        "data is damaged or truncated", c->path, done + 1, info->frames);
        }
        if ((rc = dcm_image_status(c, img, done)))
            return rc;
    }
}

/* ---- the entry point --------------------------------------------------- */

static int dcm_read(dcm_ctx *c, en_dicom_identity *id)
{
    int rc;

    std::call_once(dcm_once, dcm_init_once);
    if (!dcm_dict_ok)
        return en_err_set(c->err, EN_EIO, "%s: the DCMTK data dictionary is not loaded: install the "
                          "Debian package libdcmtk17 or set DCMDICTPATH", c->path);
    if ((rc = dcm_stat(c)) || (rc = dcm_scan(c)) || (rc = dcm_load(c)))
        return rc;
    c->xfer = c->ds->getOriginalXfer();
    if ((rc = dcm_unknown_meta_xfer(c)))
        return rc; /* DCMTK guessed an encoding; we do not decode guesses */
    dcm_read_sop(c);
    if ((rc = dcm_check_pixeldata(c)) == EN_ENOTIMAGE && id) {
        /* An SR or a PDF in a study is still one of its instances: the
         * caller needs its identity to account for it, not to read it. */
        dcm_read_identity(c->ds, id);
        return rc;
    }
    if (rc || (rc = dcm_check_xfer(c)) || (rc = dcm_geometry(c)) ||
        (rc = dcm_pixel_format(c)) || (rc = dcm_check_sizes(c)))
        return rc;
    dcm_read_fps(c->ds, c->info);
    dcm_read_regions(c->ds, c->info);
    dcm_read_view(c->ds, c->info);
    if (id)
        dcm_read_identity(c->ds, id);
    return dcm_decode(c);
}

extern "C" int en_dicom_read(const char *path, const en_dicom_limits *lim, en_dicom_info *info,
                             en_dicom_identity *id, en_frames *frames, en_err *err)
{
    en_dicom_limits dflt;
    en_err local;
    int rc;

    if (!err)
        err = &local; /* messages are built either way; callers may not want them */

    if (!path || !info || !frames)
        return en_err_set(err, EN_EINVAL, "en_dicom_read: path, info and frames are required");
    memset(info, 0, sizeof *info);
    memset(frames, 0, sizeof *frames);
    if (id)
        memset(id, 0, sizeof *id);
    if (!lim) {
        en_dicom_limits_default(&dflt);
        lim = &dflt;
    }
    en_err_clear(err);
    try {
        dcm_ctx c;
        c.path = path;
        c.lim = lim;
        c.info = info;
        c.frames = frames;
        c.err = err;
        c.ds = NULL;
        c.xfer = EXS_Unknown;
        c.has_dicm = false;
        c.file_bytes = 0;
        c.invert = false;
        rc = dcm_read(&c, id);
    } catch (const std::bad_alloc &) {
        rc = en_err_set(err, EN_ENOMEM, "%s: out of memory while reading the DICOM file", path);
    } catch (...) {
        rc = en_err_set(err, EN_EFORMAT, "%s: unexpected failure inside the DICOM parser: the file is "
                        "probably malformed", path);
    }
    if (rc != EN_OK) {
        en_frames_free(frames);
        if (id && rc != EN_ENOTIMAGE)
            memset(id, 0, sizeof *id);
    }
    return rc;
}
