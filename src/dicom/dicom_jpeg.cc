/*
 * dicom_jpeg.cc - JPEG Baseline frames (1.2.840.10008.1.2.4.50) through
 * libjpeg-turbo, because DCMTK's bundled IJG codec spends ~4 ms on a
 * 640x480 frame and an echo clip holds hundreds of them (issue 13).
 *
 * The output must be DCMTK's, byte for byte, so this decodes the way
 * DCMTK's codec is registered in dicom.cc (its defaults): the integer
 * IDCT (JDCT_ISLOW, which turbo's SIMD code reproduces exactly), fancy
 * upsampling, and a colour conversion only when the photometric
 * interpretation says YBR_FULL or YBR_FULL_422 (DCMTK's
 * EDC_photometricInterpretation); any other stream is passed through
 * unconverted, as DCMTK does, whatever markers it carries.
 *
 * It only takes the plain case and declines the rest before the caller
 * falls back to DicomImage for the whole file: one fragment per frame,
 * 8-bit sequential Huffman streams whose size and components match the
 * header, MONOCHROME2 / RGB / YBR_FULL / YBR_FULL_422, luma sampled 1x1,
 * 2x1 or 2x2 with chroma 1x1.  A stream libjpeg reports as damaged (an
 * error or even a warning) is declined too, so a damaged file gets
 * DCMTK's behaviour and its error messages, not a second opinion.
 *
 * Frames are decoded by several threads at once ([nn] threads of them,
 * en_dicom_limits.threads); everything DCMTK does stays on the caller's.
 */
#include "dicom_int.h"

extern "C" {
#include "en_util.h"
}

#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <vector>

#include <jpeglib.h>

/* ---- one frame, C style: libjpeg reports errors by longjmp ------------- */

struct tj_error {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    bool warned;
};

static void tj_exit(j_common_ptr ci)
{
    longjmp(((tj_error *)ci->err)->jb, 1);
}

/* Level -1 is a warning (corrupt data libjpeg recovers from); the rest is
 * trace output.  Nothing may reach stderr. */
static void tj_message(j_common_ptr ci, int level)
{
    if (level < 0)
        ((tj_error *)ci->err)->warned = true;
}

static bool tj_sampling_ok(const jpeg_decompress_struct *ci)
{
    const jpeg_component_info *cp = ci->comp_info;

    if (ci->num_components == 1)
        return true;
    if (cp[1].h_samp_factor != 1 || cp[1].v_samp_factor != 1 || cp[2].h_samp_factor != 1 ||
        cp[2].v_samp_factor != 1)
        return false;
    return (cp[0].h_samp_factor == 1 && cp[0].v_samp_factor == 1) ||
           (cp[0].h_samp_factor == 2 && cp[0].v_samp_factor == 1) ||
           (cp[0].h_samp_factor == 2 && cp[0].v_samp_factor == 2);
}

/* Decodes one stream into dst (rows x cols x comps, interleaved).  Only
 * plain locals live across setjmp, so the longjmp skips no destructor. */
static bool tj_frame(const Uint8 *p, size_t n, int rows, int cols, int comps, bool ybr, uint8_t *dst)
{
    struct jpeg_decompress_struct ci;
    tj_error e;

    /* Zeroed first: if creating fails, destroying finds nothing to free. */
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = tj_exit;
    e.mgr.emit_message = tj_message;
    e.warned = false;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, p, (unsigned long)n);
    if (jpeg_read_header(&ci, TRUE) != JPEG_HEADER_OK || ci.progressive_mode || ci.arith_code ||
        ci.data_precision != 8 || (int)ci.image_width != cols || (int)ci.image_height != rows ||
        ci.num_components != comps || !tj_sampling_ok(&ci)) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    ci.jpeg_color_space = ybr ? JCS_YCbCr : JCS_UNKNOWN;
    ci.out_color_space = ybr ? JCS_RGB : JCS_UNKNOWN;
    ci.dct_method = JDCT_ISLOW;
    ci.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&ci);
    if ((int)ci.output_width != cols || (int)ci.output_height != rows || ci.output_components != comps) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    while (ci.output_scanline < ci.output_height) {
        /* Up to one iMCU row per call: the decoder's own unit of work. */
        JSAMPROW rows16[16];
        JDIMENSION want = ci.output_height - ci.output_scanline;
        want = want > 16 ? 16 : want;
        for (JDIMENSION k = 0; k < want; k++)
            rows16[k] = dst + (size_t)(ci.output_scanline + k) * (size_t)cols * (size_t)comps;
        if (jpeg_read_scanlines(&ci, rows16, want) == 0)
            break;
    }
    bool whole = ci.output_scanline == ci.output_height;
    if (whole)
        jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    return whole && !e.warned;
}

/* ---- the file ------------------------------------------------------------ */

static bool tj_photometric(const char *pi, int comps, bool *ybr)
{
    *ybr = strcmp(pi, "YBR_FULL") == 0 || strcmp(pi, "YBR_FULL_422") == 0;
    if (comps == 1)
        return strcmp(pi, "MONOCHROME2") == 0;
    return comps == 3 && (*ybr || strcmp(pi, "RGB") == 0);
}

/* Frames decoded at once by the threads.  A batch's fragments are copied
 * out of DCMTK first (it is not thread-safe, and a copy keeps it from
 * holding every fragment it loads), so a batch bounds that extra memory. */
#define TJ_BATCH_FRAMES 64
#define TJ_BATCH_BYTES ((size_t)32 << 20)
#define TJ_MAX_THREADS 8

struct tj_batch {
    std::vector<Uint8> bytes;
    std::vector<size_t> off;   /* frame k's stream: bytes[off[k] .. off[k+1]) */
    int first;                 /* the file's frame number of frame 0 */
    int rows, cols, comps;
    bool ybr;
    en_frames *frames;
    std::atomic<int> next;
    std::atomic<bool> failed;
};

static void *tj_worker(void *arg)
{
    tj_batch *b = (tj_batch *)arg;
    int n = (int)b->off.size() - 1;

    for (;;) {
        int k = b->next.fetch_add(1);
        if (k >= n || b->failed.load())
            break;
        if (!tj_frame(b->bytes.data() + b->off[k], b->off[k + 1] - b->off[k], b->rows, b->cols,
                      b->comps, b->ybr, en_frames_frame(b->frames, b->first + k)))
            b->failed.store(true);
    }
    return NULL;
}

/* The frames are independent streams, so the CPUs the process may use
 * decode them side by side: a study's read is then about a core's decode
 * time divided by the threads (docs/performance.md). */
static int tj_threads(const en_dicom_limits *lim)
{
    int n = lim->threads > 0 ? lim->threads : en_cpu_count();

    return n > TJ_MAX_THREADS ? TJ_MAX_THREADS : n;
}

static bool tj_decode_batch(tj_batch *b, int threads)
{
    pthread_t tid[TJ_MAX_THREADS];
    int started = 0, n = (int)b->off.size() - 1;

    b->next.store(0);
    threads = threads > n ? n : threads;
    /* A thread that cannot be started leaves its share to the others. */
    while (started < threads - 1 && pthread_create(&tid[started], NULL, tj_worker, b) == 0)
        started++;
    tj_worker(b);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    return !b->failed.load();
}

int dcm_decode_jpeg_turbo(dcm_ctx *c)
{
    const en_dicom_info *info = c->info;
    DcmElement *el = NULL;
    DcmPixelData *pd;
    DcmPixelSequence *seq = NULL;
    DcmPixelItem *item = NULL;
    tj_batch b;
    int threads;
    bool ybr;

    if (c->xfer != EXS_JPEGProcess1 || info->bits_allocated != 8 || info->bits_stored != 8 ||
        info->samples_per_pixel != info->channels ||
        !tj_photometric(info->photometric, info->channels, &ybr))
        return DCM_JPEG_DECLINED;
    if (c->ds->findAndGetElement(DCM_PixelData, el, OFFalse).bad() ||
        !(pd = dynamic_cast<DcmPixelData *>(el)) ||
        pd->getEncapsulatedRepresentation(c->xfer, NULL, seq).bad() || !seq ||
        seq->card() != (unsigned long)info->frames + 1)
        return DCM_JPEG_DECLINED;
    b.rows = info->rows;
    b.cols = info->cols;
    b.comps = info->channels;
    b.ybr = ybr;
    b.frames = c->frames;
    b.failed.store(false);
    threads = tj_threads(c->lim);
    for (int first = 0; first < info->frames;) {
        b.first = first;
        b.bytes.clear();
        b.off.assign(1, 0);
        int f = first;
        for (; f < info->frames && f - first < TJ_BATCH_FRAMES && b.bytes.size() < TJ_BATCH_BYTES;
             f++) {
            if (seq->getItem(item, (unsigned long)f + 1).bad() || !item)
                return DCM_JPEG_DECLINED;
            Uint32 len = item->getLength();
            if (len < 4 || len > c->file_bytes)
                return DCM_JPEG_DECLINED;
            size_t at = b.bytes.size();
            b.bytes.resize(at + len);
            if (item->getPartialValue(b.bytes.data() + at, 0, len).bad())
                return DCM_JPEG_DECLINED;
            b.off.push_back(at + len);
        }
        if (!tj_decode_batch(&b, threads))
            return DCM_JPEG_DECLINED;
        first = f;
    }
    return EN_OK;
}
