/*
 * dicom_attrs.cc - the attributes of an echo file that are not pixels: frame
 * rate (with the order of precedence documented in en_dicom.h), the
 * ultrasound regions the sector module needs, and the identity block.
 *
 * Everything here reads through dcm_get_num/dcm_get_str, which accept any VR
 * and refuse non-finite or unparsable values, so a hostile file can make an
 * attribute look absent but never make us crash or trust garbage.
 */
#include "dicom_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frame rates outside this range are measurement junk, not a cine loop. */
#define DCM_FPS_MIN 0.01
#define DCM_FPS_MAX 2000.0
#define DCM_DEFAULT_FPS 30.0

void dcm_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = 0;

    if (cap == 0)
        return;
    for (const unsigned char *s = (const unsigned char *)(src ? src : ""); *s && n + 1 < cap; s++) {
        if (*s < 0x20 || *s == 0x7f)
            continue; /* keep values printable and single-line */
        dst[n++] = (char)*s;
    }
    /* Cut back to the start of a UTF-8 sequence the cut may have split. */
    if (n > 0 && ((unsigned char)dst[n - 1] & 0x80)) {
        size_t start = n - 1, need;
        unsigned char lead;
        while (start > 0 && ((unsigned char)dst[start] & 0xC0) == 0x80)
            start--;
        lead = (unsigned char)dst[start];
        need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (n - start < need)
            n = start;
    }
    dst[n] = '\0';
}

void dcm_warn(en_dicom_info *info, const char *fmt, ...)
{
    va_list ap;

    if (info->nwarnings >= EN_DICOM_MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    vsnprintf(info->warnings[info->nwarnings], sizeof info->warnings[0], fmt, ap);
    va_end(ap);
    info->nwarnings++;
}

unsigned long dcm_vm(DcmItem *item, const DcmTagKey &tag)
{
    DcmElement *el = NULL;

    if (item->findAndGetElement(tag, el, OFFalse).bad() || !el || el->getLength() == 0)
        return 0;
    return el->getVM();
}

bool dcm_get_str(DcmItem *item, const DcmTagKey &tag, unsigned long pos, OFString &out)
{
    DcmElement *el = NULL;

    if (item->findAndGetElement(tag, el, OFFalse).bad() || !el || el->getLength() == 0)
        return false;
    if (el->ident() == EVR_SQ || el->ident() == EVR_UN || el->ident() == EVR_OB ||
        el->ident() == EVR_OW || el->ident() == EVR_pixelSQ)
        return false; /* binary blobs are never a usable string */
    if (el->getOFString(out, pos, OFTrue).bad())
        return false;
    return !out.empty();
}

/* Binary numeric VRs first: exact, no formatting round trip. */
static bool dcm_binary_num(DcmElement *el, unsigned long pos, double *out)
{
    Float64 f64; Float32 f32; Uint32 u32; Sint32 s32; Uint16 u16; Sint16 s16;

    switch (el->ident()) {
    case EVR_FD: if (el->getFloat64(f64, pos).good()) { *out = f64; return true; } break;
    case EVR_FL: if (el->getFloat32(f32, pos).good()) { *out = f32; return true; } break;
    case EVR_UL: if (el->getUint32(u32, pos).good()) { *out = u32; return true; } break;
    case EVR_SL: if (el->getSint32(s32, pos).good()) { *out = s32; return true; } break;
    case EVR_US: if (el->getUint16(u16, pos).good()) { *out = u16; return true; } break;
    case EVR_SS: if (el->getSint16(s16, pos).good()) { *out = s16; return true; } break;
    default: break;
    }
    return false;
}

bool dcm_get_num(DcmItem *item, const DcmTagKey &tag, unsigned long pos, double *out)
{
    DcmElement *el = NULL;
    OFString s;
    double v = 0;
    char *end = NULL;

    if (item->findAndGetElement(tag, el, OFFalse).bad() || !el || el->getLength() == 0)
        return false;
    if (pos >= el->getVM())
        return false;
    if (!dcm_binary_num(el, pos, &v)) {
        if (!dcm_get_str(item, tag, pos, s))
            return false;
        v = strtod(s.c_str(), &end);
        if (end == s.c_str())
            return false;
        while (*end == ' ')
            end++;
        if (*end != '\0')
            return false;
    }
    if (!isfinite(v))
        return false;
    *out = v;
    return true;
}

/* ---- frame rate -------------------------------------------------------- */

static bool fps_usable(double fps)
{
    return fps >= DCM_FPS_MIN && fps <= DCM_FPS_MAX;
}

/* Mean frame interval of FrameTimeVector.  The standard's first value is the
 * time before the first frame and is usually 0, so a leading 0 is skipped. */
static bool fps_from_vector(DcmItem *ds, double *fps)
{
    unsigned long n = dcm_vm(ds, DCM_FrameTimeVector), used = 0;
    double sum = 0, v;

    for (unsigned long i = 0; i < n; i++) {
        if (!dcm_get_num(ds, DCM_FrameTimeVector, i, &v))
            return false;
        if (i == 0 && v == 0)
            continue;
        if (v <= 0)
            return false;
        sum += v;
        used++;
    }
    if (used == 0)
        return false;
    *fps = 1000.0 / (sum / (double)used);
    return fps_usable(*fps);
}

void dcm_read_fps(DcmItem *ds, en_dicom_info *info)
{
    double v;

    if (dcm_get_num(ds, DCM_CineRate, 0, &v) && fps_usable(v)) {
        info->fps = v;
        info->fps_source = EN_FPS_CINE_RATE;
    } else if (dcm_get_num(ds, DCM_FrameTime, 0, &v) && v > 0 && fps_usable(1000.0 / v)) {
        info->fps = 1000.0 / v;
        info->fps_source = EN_FPS_FRAME_TIME;
    } else if (fps_from_vector(ds, &v)) {
        info->fps = v;
        info->fps_source = EN_FPS_FRAME_TIME_VECTOR;
    } else if (dcm_get_num(ds, DCM_RecommendedDisplayFrameRate, 0, &v) && fps_usable(v)) {
        info->fps = v;
        info->fps_source = EN_FPS_RECOMMENDED;
    } else {
        info->fps = DCM_DEFAULT_FPS;
        info->fps_source = EN_FPS_DEFAULT;
        if (info->frames > 1)
            dcm_warn(info, "no usable frame rate (CineRate, FrameTime, FrameTimeVector, "
                     "RecommendedDisplayFrameRate): assuming %.0f fps", DCM_DEFAULT_FPS);
    }
}

/* ---- ultrasound regions ------------------------------------------------ */

static int clamp_int(double v)
{
    if (v > 2147483647.0)
        return 2147483647;
    if (v < -2147483647.0)
        return -2147483647;
    return (int)v;
}

static int num_or(DcmItem *it, const DcmTagKey &tag, double dflt, double *out)
{
    if (dcm_get_num(it, tag, 0, out))
        return 1;
    *out = dflt;
    return 0;
}

/* Copies one item; false if it lacks the location, without which it is
 * useless downstream. */
static bool read_region(DcmItem *it, en_us_region *r)
{
    double x0, y0, x1, y1, v, rx, ry;

    if (!num_or(it, DCM_RegionLocationMinX0, 0, &x0) || !num_or(it, DCM_RegionLocationMinY0, 0, &y0) ||
        !num_or(it, DCM_RegionLocationMaxX1, 0, &x1) || !num_or(it, DCM_RegionLocationMaxY1, 0, &y1))
        return false;
    memset(r, 0, sizeof *r);
    r->x0 = clamp_int(x0);
    r->y0 = clamp_int(y0);
    r->x1 = clamp_int(x1);
    r->y1 = clamp_int(y1);
    num_or(it, DCM_RegionSpatialFormat, 0, &v);
    r->spatial_format = clamp_int(v);
    num_or(it, DCM_RegionDataType, 0, &v);
    r->data_type = clamp_int(v);
    num_or(it, DCM_RegionFlags, 0, &v);
    r->flags = (v >= 0 && v <= 4294967295.0) ? (uint32_t)v : 0;
    if (num_or(it, DCM_ReferencePixelX0, 0, &rx) && num_or(it, DCM_ReferencePixelY0, 0, &ry)) {
        r->has_reference = 1;
        r->ref_x = clamp_int(rx);
        r->ref_y = clamp_int(ry);
    }
    num_or(it, DCM_PhysicalDeltaX, 0, &r->delta_x);
    num_or(it, DCM_PhysicalDeltaY, 0, &r->delta_y);
    num_or(it, DCM_PhysicalUnitsXDirection, 0, &v);
    r->units_x = clamp_int(v);
    num_or(it, DCM_PhysicalUnitsYDirection, 0, &v);
    r->units_y = clamp_int(v);
    return true;
}

void dcm_read_regions(DcmItem *ds, en_dicom_info *info)
{
    DcmSequenceOfItems *seq = NULL;
    unsigned long n, skipped = 0;

    if (ds->findAndGetSequence(DCM_SequenceOfUltrasoundRegions, seq).bad() || !seq)
        return;
    n = seq->card();
    for (unsigned long i = 0; i < n; i++) {
        DcmItem *it = seq->getItem(i);
        if (info->nregions >= EN_DICOM_MAX_REGIONS) {
            dcm_warn(info, "SequenceOfUltrasoundRegions has %lu items: only the first %d are used",
                     n, EN_DICOM_MAX_REGIONS);
            break;
        }
        if (it && read_region(it, &info->regions[info->nregions]))
            info->nregions++;
        else
            skipped++;
    }
    if (skipped)
        dcm_warn(info, "%lu ultrasound region(s) without RegionLocation ignored", skipped);
}

/* ---- view -------------------------------------------------------------- */

/* The code is copied as written; which view it means is the study
 * module's business (en_view_from_code), not the reader's. */
void dcm_read_view(DcmItem *ds, en_dicom_info *info)
{
    DcmSequenceOfItems *seq = NULL;
    DcmItem *it;
    OFString s;

    if (ds->findAndGetSequence(DCM_ViewCodeSequence, seq).good() && seq && seq->card() > 0 &&
        (it = seq->getItem(0)) != NULL) {
        if (dcm_get_str(it, DCM_CodingSchemeDesignator, 0, s))
            dcm_copy_str(info->view_scheme, sizeof info->view_scheme, s.c_str());
        if (dcm_get_str(it, DCM_CodeValue, 0, s))
            dcm_copy_str(info->view_value, sizeof info->view_value, s.c_str());
        if (dcm_get_str(it, DCM_CodeMeaning, 0, s))
            dcm_copy_str(info->view_meaning, sizeof info->view_meaning, s.c_str());
    }
    if (!info->view_value[0] && !info->view_meaning[0] && dcm_get_str(ds, DCM_ViewName, 0, s))
        dcm_copy_str(info->view_meaning, sizeof info->view_meaning, s.c_str());
}

/* ---- identity ---------------------------------------------------------- */

static void id_field(DcmItem *ds, const DcmTagKey &tag, char *dst, size_t cap)
{
    OFString s;

    /* All values of a multi-valued attribute, as stored (backslashes). */
    if (ds->findAndGetOFStringArray(tag, s, OFFalse).bad())
        s.clear();
    /* Trim the padding DICOM adds to even lengths. */
    while (!s.empty() && (s[s.size() - 1] == ' ' || s[s.size() - 1] == '\0'))
        s.erase(s.size() - 1);
    dcm_copy_str(dst, cap, s.c_str());
}

void dcm_read_identity(DcmItem *ds, en_dicom_identity *id)
{
    memset(id, 0, sizeof *id);
    id_field(ds, DCM_StudyInstanceUID, id->study_instance_uid, sizeof id->study_instance_uid);
    id_field(ds, DCM_SeriesInstanceUID, id->series_instance_uid, sizeof id->series_instance_uid);
    id_field(ds, DCM_SOPInstanceUID, id->sop_instance_uid, sizeof id->sop_instance_uid);
    id_field(ds, DCM_PatientName, id->patient_name, sizeof id->patient_name);
    id_field(ds, DCM_PatientID, id->patient_id, sizeof id->patient_id);
    id_field(ds, DCM_PatientBirthDate, id->patient_birth_date, sizeof id->patient_birth_date);
    id_field(ds, DCM_AccessionNumber, id->accession_number, sizeof id->accession_number);
    id_field(ds, DCM_StudyDate, id->study_date, sizeof id->study_date);
    id_field(ds, DCM_StudyTime, id->study_time, sizeof id->study_time);
    id_field(ds, DCM_InstitutionName, id->institution_name, sizeof id->institution_name);
}
