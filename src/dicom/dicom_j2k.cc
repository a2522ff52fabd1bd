/*
 * dicom_j2k.cc - JPEG 2000 frames (1.2.840.10008.1.2.4.90 / .91) through
 * OpenJPEG, because Debian's DCMTK has no JPEG 2000 decoder.
 *
 * Built only when the OpenJPEG header is on the include path (configure's
 * OPENJP2_CFLAGS); otherwise dcm_j2k_available() says no and the reader
 * refuses these syntaxes with EN_EUNSUPPORTED.
 *
 * Each frame's fragments are copied out of the file (without making DCMTK
 * keep them in memory), decoded, checked against Rows/Columns/Samples before
 * any pixel is produced, and converted to 8 bits by the same rules as the
 * DicomImage path in dicom.cc: stored range scaled linearly to 0..255,
 * MONOCHROME1 inverted, YBR_FULL converted to RGB.  YBR_ICT and YBR_RCT need
 * no conversion: OpenJPEG undoes the codestream's colour transform.
 */
#include "dicom_int.h"

#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"

#include <string.h>

#include <vector>

bool dcm_is_j2k(E_TransferSyntax x)
{
    return x == EXS_JPEG2000LosslessOnly || x == EXS_JPEG2000;
}

#if __has_include(<openjpeg.h>)
#include <openjpeg.h>

bool dcm_j2k_available(void)
{
    return true;
}

/* ---- fragments of one frame -------------------------------------------- */

static bool starts_codestream(DcmPixelItem *item)
{
    Uint8 head[4];

    if (item->getLength() < 4 || item->getPartialValue(head, 0, 4).bad())
        return false;
    /* SOC + SIZ markers, or a JP2 signature box some writers add. */
    return (head[0] == 0xFF && head[1] == 0x4F && head[2] == 0xFF && head[3] == 0x51) ||
           (head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] == 0x0C);
}

/* First fragment index (1-based item numbers) of every frame: one fragment
 * per frame when the counts agree, else frames start where a codestream
 * starts.  Empty result: the layout cannot be trusted. */
static std::vector<unsigned long> frame_starts(DcmPixelSequence *seq, int frames)
{
    std::vector<unsigned long> starts;
    unsigned long n = seq->card();
    DcmPixelItem *item = NULL;

    if (n - 1 == (unsigned long)frames) {
        for (unsigned long i = 1; i < n; i++)
            starts.push_back(i);
        return starts;
    }
    for (unsigned long i = 1; i < n; i++)
        if (seq->getItem(item, i).good() && item && starts_codestream(item))
            starts.push_back(i);
    if (starts.size() != (size_t)frames || (frames > 0 && starts[0] != 1))
        starts.clear();
    return starts;
}

static int frame_bytes(dcm_ctx *c, DcmPixelSequence *seq, unsigned long first, unsigned long end,
                       std::vector<Uint8> &buf)
{
    DcmPixelItem *item = NULL;

    buf.clear();
    for (unsigned long i = first; i < end; i++) {
        if (seq->getItem(item, i).bad() || !item)
            return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 fragment %lu is missing", c->path, i);
        Uint32 len = item->getLength();
        size_t at = buf.size();
        if (len == 0)
            continue;
        if (len > c->file_bytes)
            return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 fragment %lu is longer than the file",
                              c->path, i);
        buf.resize(at + len);
        if (item->getPartialValue(&buf[at], 0, len).bad())
            return en_err_set(c->err, EN_EFORMAT, "%s: cannot read JPEG 2000 fragment %lu: the file is "
                              "truncated or damaged", c->path, i);
    }
    return EN_OK;
}

/* ---- OpenJPEG over a memory buffer ------------------------------------- */

struct j2k_mem {
    const Uint8 *p;
    size_t n, pos;
};

static OPJ_SIZE_T j2k_read(void *dst, OPJ_SIZE_T n, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;
    size_t k = m->n - m->pos < n ? m->n - m->pos : n;

    if (k == 0)
        return (OPJ_SIZE_T)-1; /* OpenJPEG's end-of-stream */
    memcpy(dst, m->p + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T j2k_skip(OPJ_OFF_T n, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;

    if (n < 0)
        n = (OPJ_OFF_T)m->pos < -n ? -(OPJ_OFF_T)m->pos : n;
    else if ((size_t)n > m->n - m->pos)
        n = (OPJ_OFF_T)(m->n - m->pos);
    m->pos = (size_t)((OPJ_OFF_T)m->pos + n);
    return n;
}

static OPJ_BOOL j2k_seek(OPJ_OFF_T n, void *ud)
{
    j2k_mem *m = (j2k_mem *)ud;

    if (n < 0 || (size_t)n > m->n)
        return OPJ_FALSE;
    m->pos = (size_t)n;
    return OPJ_TRUE;
}

static void j2k_quiet(const char *msg, void *ud)
{
    (void)msg;
    (void)ud; /* OpenJPEG's chatter must not reach stderr */
}

/* Owns what one decode allocates, whatever path leaves the function. */
struct j2k_decoder {
    opj_codec_t *codec = NULL;
    opj_stream_t *stream = NULL;
    opj_image_t *image = NULL;
    ~j2k_decoder()
    {
        if (image)
            opj_image_destroy(image);
        if (stream)
            opj_stream_destroy(stream);
        if (codec)
            opj_destroy_codec(codec);
    }
};

/* The decoded image must be exactly what the header promised. */
static int j2k_check_image(dcm_ctx *c, const opj_image_t *img, int frame)
{
    const en_dicom_info *info = c->info;

    if ((int)img->numcomps < info->samples_per_pixel)
        return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d has %u component(s) but SamplesPerPixel "
                          "is %d", c->path, frame + 1, img->numcomps, info->samples_per_pixel);
    for (int k = 0; k < info->samples_per_pixel; k++) {
        const opj_image_comp_t *cp = &img->comps[k];
        if ((int)cp->w != info->cols || (int)cp->h != info->rows || cp->dx != 1 || cp->dy != 1)
            return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d is %ux%u (subsampling %ux%u) but "
                              "Columns x Rows say %dx%d: the header lies", c->path, frame + 1, cp->w, cp->h,
                              cp->dx, cp->dy, info->cols, info->rows);
        if (cp->prec < 1 || cp->prec > 16)
            return en_err_set(c->err, EN_EUNSUPPORTED, "%s: JPEG 2000 frame %d has %u-bit samples (only 1..16)",
                              c->path, frame + 1, cp->prec);
    }
    return EN_OK;
}

static int j2k_open(dcm_ctx *c, j2k_decoder &d, j2k_mem *mem, int frame)
{
    opj_dparameters_t par;
    bool jp2 = mem->n >= 4 && mem->p[0] == 0 && mem->p[3] == 0x0C;

    d.codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    d.stream = opj_stream_create(1 << 16, OPJ_TRUE);
    if (!d.codec || !d.stream)
        return en_err_set(c->err, EN_ENOMEM, "%s: out of memory starting the JPEG 2000 decoder", c->path);
    opj_set_info_handler(d.codec, j2k_quiet, NULL);
    opj_set_warning_handler(d.codec, j2k_quiet, NULL);
    opj_set_error_handler(d.codec, j2k_quiet, NULL);
    opj_stream_set_user_data(d.stream, mem, NULL);
    opj_stream_set_user_data_length(d.stream, mem->n);
    opj_stream_set_read_function(d.stream, j2k_read);
    opj_stream_set_skip_function(d.stream, j2k_skip);
    opj_stream_set_seek_function(d.stream, j2k_seek);
    opj_set_default_decoder_parameters(&par);
    if (!opj_setup_decoder(d.codec, &par) || !opj_read_header(d.stream, d.codec, &d.image) || !d.image)
        return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d has no valid codestream header: the "
                          "pixel data is damaged", c->path, frame + 1);
    return EN_OK;
}

/* ---- 8-bit output ------------------------------------------------------ */

static inline int to8(OPJ_INT32 v, OPJ_UINT32 prec, OPJ_UINT32 sgnd)
{
    int64_t lo = sgnd ? -((int64_t)1 << (prec - 1)) : 0, range = ((int64_t)1 << prec) - 1;
    int64_t x = ((int64_t)v - lo) * 255;

    x = x < 0 ? 0 : (x + range / 2) / range;
    return x > 255 ? 255 : (int)x;
}

static inline uint8_t clamp8(double v)
{
    v = v + 0.5;
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

/* Full-range BT.601, as PS3.3 C.7.6.3.1.2 defines YBR_FULL. */
static void ybr_to_rgb(uint8_t *px)
{
    double y = px[0], cb = px[1] - 128.0, cr = px[2] - 128.0;

    px[0] = clamp8(y + 1.402 * cr);
    px[1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
    px[2] = clamp8(y + 1.772 * cb);
}

static void j2k_store(dcm_ctx *c, const opj_image_t *img, int frame)
{
    const en_dicom_info *info = c->info;
    uint8_t *dst = en_frames_frame(c->frames, frame);
    size_t npx = (size_t)info->rows * info->cols;
    int ch = info->channels;
    bool ybr = strcmp(info->photometric, "YBR_FULL") == 0;

    for (int k = 0; k < ch; k++) {
        const opj_image_comp_t *cp = &img->comps[k];
        for (size_t i = 0; i < npx; i++)
            dst[i * ch + k] = (uint8_t)to8(cp->data[i], cp->prec, cp->sgnd);
    }
    for (size_t i = 0; i < npx; i++) {
        if (ybr)
            ybr_to_rgb(dst + i * 3);
        else if (c->invert)
            dst[i] = (uint8_t)(255 - dst[i]);
    }
}

static int j2k_frame(dcm_ctx *c, std::vector<Uint8> &buf, int frame)
{
    j2k_mem mem = { buf.data(), buf.size(), 0 };
    j2k_decoder d;
    int rc;

    if ((rc = j2k_open(c, d, &mem, frame)))
        return rc;
    /* Geometry first: a lying header must not make OpenJPEG allocate. */
    if ((int)(d.image->x1 - d.image->x0) != c->info->cols || (int)(d.image->y1 - d.image->y0) != c->info->rows)
        return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d is %ux%u but Columns x Rows say %dx%d: "
                          "the header lies", c->path, frame + 1, d.image->x1 - d.image->x0,
                          d.image->y1 - d.image->y0, c->info->cols, c->info->rows);
    if (!opj_decode(d.codec, d.stream, d.image) || !opj_end_decompress(d.codec, d.stream))
        return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d cannot be decoded: the pixel data is "
                          "damaged or truncated", c->path, frame + 1);
    if ((rc = j2k_check_image(c, d.image, frame)))
        return rc;
    for (int k = 0; k < c->info->samples_per_pixel; k++)
        if (!d.image->comps[k].data)
            return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 frame %d decoded without data", c->path,
                              frame + 1);
    j2k_store(c, d.image, frame);
    return EN_OK;
}

int dcm_decode_j2k(dcm_ctx *c)
{
    DcmElement *el = NULL;
    DcmPixelData *pd;
    DcmPixelSequence *seq = NULL;
    std::vector<Uint8> buf;
    int rc;

    if (strcmp(c->info->photometric, "PALETTE COLOR") == 0 || strcmp(c->info->photometric, "YBR_FULL_422") == 0)
        return en_err_set(c->err, EN_EUNSUPPORTED, "%s: %s in JPEG 2000 is not supported: re-export the study "
                          "uncompressed or as RGB", c->path, c->info->photometric);
    c->invert = strcmp(c->info->photometric, "MONOCHROME1") == 0;
    if (c->ds->findAndGetElement(DCM_PixelData, el, OFFalse).bad() || !(pd = dynamic_cast<DcmPixelData *>(el)) ||
        pd->getEncapsulatedRepresentation(c->xfer, NULL, seq).bad() || !seq)
        return en_err_set(c->err, EN_EFORMAT, "%s: JPEG 2000 pixel data is not encapsulated", c->path);
    std::vector<unsigned long> starts = frame_starts(seq, c->info->frames);
    if (starts.empty())
        return en_err_set(c->err, EN_EFORMAT, "%s: cannot tell which JPEG 2000 fragments make up each of the %d "
                          "frames: the pixel data is malformed", c->path, c->info->frames);
    starts.push_back(seq->card());
    for (int f = 0; f < c->info->frames; f++) {
        if ((rc = frame_bytes(c, seq, starts[f], starts[f + 1], buf)) || (rc = j2k_frame(c, buf, f)))
            return rc;
    }
    return EN_OK;
}

#else /* no OpenJPEG in this build */

bool dcm_j2k_available(void)
{
    return false;
}

int dcm_decode_j2k(dcm_ctx *c)
{
    return en_err_set(c->err, EN_EUNSUPPORTED, "%s: JPEG 2000 is not supported by this build", c->path);
}

#endif
