/*
 * sr.cc - a study result as DICOM objects in the original study (en_sr.h):
 * a Comprehensive SR built with DCMTK's DSRDocument, and the one-page PDF
 * report as an Encapsulated PDF.  A thin wrapper: the content tree below is
 * the whole design, and docs/dicom-network.md shows it as a table.
 *
 * Content (TID 5200 "Echocardiography Procedure Report", extensible):
 *
 *   CONTAINER (125200, DCM) Adult Echocardiography Procedure Report
 *     HAS CONCEPT MOD  Language = English                          TID 1204
 *     HAS OBS CONTEXT  Observer Type = Device; Device Observer UID, Name,
 *                      Manufacturer, Model Name                    TID 1001/1004
 *     CONTAINS CONTAINER (59776-5, LN) Findings                    TID 5202
 *       HAS CONCEPT MOD  Finding Site = (87878005, SCT) Left Ventricle
 *       CONTAINS CONTAINER (125007, DCM) Measurement Group
 *         HAS CONCEPT MOD  Image Mode = 2D mode
 *         CONTAINS NUM (18043-0, LN) LVEF by US = the study's EF, %  TID 5203
 *           HAS CONCEPT MOD  Measurement Method = (ECHONET-EF, 99ECHONETD)
 *           HAS CONCEPT MOD  Derivation = (373098007, SCT) Mean
 *           HAS CONCEPT MOD  Algorithm Name, Algorithm Version,
 *                            Algorithm Parameters (one per model:
 *                            role, name, SHA-256, origin)         TID 4019
 *         CONTAINS NUM (18043-0, LN) LVEF by US = one beat, %     (per beat)
 *           HAS CONCEPT MOD  Measurement Method = (ECHONET-EF, 99ECHONETD)
 *           HAS ACQ CONTEXT  NUM (122149, DCM) Beat Number = 1, 2, ...
 *     CONTAINS TEXT (121106, DCM) Comment: not for diagnosis (phantom models)
 *     CONTAINS TEXT (121106, DCM) Comment: method, notes, echonetd reference
 *
 * LVEF is (18043-0, LN) because that is the code CID 12200 (TID 5200's left
 * ventricle measurements) lists.  The method has no standard code (it is
 * neither Simpson's nor Teichholz), so it is a local one, declared in the
 * Coding Scheme Identification Sequence as DICOM asks.
 *
 * Identifying values (study UID, patient, accession number) go into the
 * objects, where they belong, and never into an error message.  DCMTK's
 * logger stays off (dicom.cc switches it off for the process).
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/codes/sct.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "en_atomic.h"
#include "en_sr.h"
}

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mutex>
#include <new>
#include <vector>

#define SR_LOCAL_SCHEME "99ECHONETD"
#define SR_MAX_PDF_BYTES ((off_t)256 << 20)

/* Codes DCMTK 3.6.7's headers do not carry (or carry only retired). */
static const DSRBasicCodedEntry SR_FINDINGS("59776-5", "LN", "Findings");
static const DSRBasicCodedEntry SR_LEFT_VENTRICLE("87878005", "SCT", "Left Ventricle");
static const DSRBasicCodedEntry SR_IMAGE_MODE("399264008", "SCT", "Image Mode");
static const DSRBasicCodedEntry SR_2D_MODE("399064001", "SCT", "2D mode");
static const DSRBasicCodedEntry SR_LVEF("18043-0", "LN", "Left Ventricular Ejection Fraction by US");
static const DSRBasicCodedEntry SR_MEAN("373098007", "SCT", "Mean");
static const DSRBasicCodedEntry SR_PERCENT("%", "UCUM", "%");
static const DSRBasicCodedEntry SR_NO_UNITS("1", "UCUM", "no units");
static const DSRBasicCodedEntry SR_ENGLISH("en", "RFC5646", "English");
static const DSRBasicCodedEntry SR_METHOD("ECHONET-EF", SR_LOCAL_SCHEME,
                                          "EchoNet-Dynamic video model, beat by beat");

static std::once_flag sr_once;

static void sr_init_once(void)
{
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
}

/* ---- the header (patient, study, series, equipment) ------------------------- */

static bool sr_valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
              : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0)
            return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return false;
    }
    return true;
}

/* The key store hands back strings as the modality wrote them: keep their
 * character set when known, else guess from the bytes. */
static const char *sr_charset(const en_sr_patient *pt, OFString &all)
{
    bool ascii = true;

    if (pt->specific_character_set[0])
        return pt->specific_character_set;
    for (size_t i = 0; i < all.length(); i++)
        if ((unsigned char)all[i] >= 0x80)
            ascii = false;
    if (ascii)
        return "";
    return sr_valid_utf8(all.c_str()) ? "ISO_IR 192" : "ISO_IR 100";
}

/* "YYYYMMDD", "HHMMSS" and "+HHMM" of a Unix ms time, local. */
static void sr_times(int64_t ms, char date[9], char tim[7], char tz[6])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    int off;

    localtime_r(&t, &tm);
    strftime(date, 9, "%Y%m%d", &tm);
    strftime(tim, 7, "%H%M%S", &tm);
    off = (int)(tm.tm_gmtoff / 60) % (24 * 60);   /* a real offset is within a day */
    snprintf(tz, 6, "%c%02d%02d", off < 0 ? '-' : '+', abs(off) / 60 % 24, abs(off) % 60);
}

static int sr_check_input(const en_sr_patient *pt, const en_sr_result *r, const en_sr_uids *u,
                          en_err *err)
{
    if (!pt->study_instance_uid[0] || DcmUniqueIdentifier::checkStringValue(
            pt->study_instance_uid, "1").bad())
        return en_err_set(err, EN_EINVAL, "SR for study %s: the key store gave no valid Study "
                          "Instance UID (the study cannot be placed in the PACS)", r->pseudonym);
    if (!u->sr_series[0] || !u->sr_instance[0] || !u->pdf_series[0] || !u->pdf_instance[0])
        return en_err_set(err, EN_EINVAL, "SR for study %s: UIDs missing (en_sr_uids_derive)",
                          r->pseudonym);
    if (r->nbeats < 0 || r->nbeats > EN_SR_MAX_BEATS || r->nmodels < 0 ||
        r->nmodels > EN_SR_MAX_MODELS || r->version < 1 || !isfinite(r->ef))
        return en_err_set(err, EN_EINVAL, "SR for study %s: result out of range (EF, beats, "
                          "models or version)", r->pseudonym);
    for (int i = 0; i < r->nbeats; i++)
        if (!isfinite(r->beats[i].ef))
            return en_err_set(err, EN_EINVAL, "SR for study %s: beat %d has no EF",
                              r->pseudonym, i + 1);
    return EN_OK;
}

/* Sets one header attribute through DSRDocument; on a value DCMTK rejects,
 * names the attribute, never the value. */
#define SR_SET(call, what) do { \
        if ((call).bad()) \
            return en_err_set(err, EN_EINVAL, "SR for study %s: the %s from the key store is " \
                              "not a valid DICOM value", r->pseudonym, what); \
    } while (0)

static int sr_header(DSRDocument &doc, const en_sr_patient *pt, const en_sr_result *r,
                     en_err *err)
{
    char date[9], tim[7], tz[6], num[16], desc[64];
    OFString all = OFString(pt->patient_name) + pt->patient_id + pt->accession_number +
                   pt->study_id + r->institution;
    const char *cs = sr_charset(pt, all);

    sr_times(r->made_ms, date, tim, tz);
    if (cs[0])
        SR_SET(doc.setSpecificCharacterSet(cs), "character set");
    SR_SET(doc.createNewSeriesInStudy(pt->study_instance_uid), "Study Instance UID");
    SR_SET(doc.setPatientName(pt->patient_name), "patient name");
    SR_SET(doc.setPatientID(pt->patient_id), "patient ID");
    SR_SET(doc.setAccessionNumber(pt->accession_number), "accession number");
    SR_SET(doc.setPatientBirthDate(pt->patient_birth_date), "birth date");
    SR_SET(doc.setPatientSex(pt->patient_sex), "patient sex");
    SR_SET(doc.setStudyDate(pt->study_date), "study date");
    SR_SET(doc.setStudyTime(pt->study_time), "study time");
    SR_SET(doc.setStudyID(pt->study_id), "study ID");
    SR_SET(doc.setManufacturer("echonetd"), "manufacturer");
    SR_SET(doc.setManufacturerModelName("EchoNet-Dynamic"), "model name");
    SR_SET(doc.setSoftwareVersions(r->algorithm_version), "algorithm version");
    snprintf(num, sizeof num, "%d", 9000 + r->version % 500);
    SR_SET(doc.setSeriesNumber(num), "series number");
    snprintf(num, sizeof num, "%d", r->version);
    SR_SET(doc.setInstanceNumber(num), "instance number");
    snprintf(desc, sizeof desc, "echonetd LVEF result v%d%s", r->version,
             r->not_for_diagnosis ? " NOT FOR DIAGNOSIS" : "");
    SR_SET(doc.setSeriesDescription(desc), "series description");
    SR_SET(doc.setContentDate(date), "content date");
    SR_SET(doc.setContentTime(tim), "content time");
    SR_SET(doc.setTimezoneOffsetFromUTC(tz), "timezone");
    /* Nobody has verified what a model said: UNVERIFIED (the default, no
     * verifyDocument) and PRELIMINARY. */
    SR_SET(doc.setPreliminaryFlag(DSRTypes::PF_Preliminary), "preliminary flag");
    return EN_OK;
}

/* ---- the content tree --------------------------------------------------------- */

/* Adds content items at the tree's cursor; the first failure sticks and
 * names the item (DCMTK refuses items its IOD constraints forbid). */
struct SrTree {
    DSRDocumentTree &t;
    const char *failed = NULL;

    explicit SrTree(DSRDocumentTree &tree) : t(tree) {}

    bool add(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
             const DSRBasicCodedEntry &name, DSRTypes::E_AddMode mode, const char *what)
    {
        if (failed)
            return false;
        if (t.addContentItem(rel, vt, mode) == 0 ||
            t.getCurrentContentItem().setConceptName(DSRCodedEntryValue(name)).bad()) {
            failed = what;
            return false;
        }
        return true;
    }
    bool child(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
               const DSRBasicCodedEntry &name, const char *what)
    {
        return add(rel, vt, name, DSRTypes::AM_belowCurrent, what);
    }
    bool next(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
              const DSRBasicCodedEntry &name, const char *what)
    {
        return add(rel, vt, name, DSRTypes::AM_afterCurrent, what);
    }
    void check(const OFCondition &c, const char *what)
    {
        if (!failed && c.bad())
            failed = what;
    }
    void code(const DSRBasicCodedEntry &v, const char *what)
    {
        if (!failed)
            check(t.getCurrentContentItem().setCodeValue(DSRCodedEntryValue(v)), what);
    }
    void text(const char *v, const char *what)
    {
        if (!failed)
            check(t.getCurrentContentItem().setStringValue(v[0] ? v : "-"), what);
    }
    /* EF to one decimal, as echo reports give it; counts whole. */
    void num(double v, const DSRBasicCodedEntry &unit, const char *what, bool whole = false)
    {
        char s[32];
        snprintf(s, sizeof s, whole ? "%.0f" : "%.1f", v);
        if (!failed)
            check(t.getCurrentContentItem().setNumericValue(
                      DSRNumericMeasurementValue(s, DSRCodedEntryValue(unit))), what);
    }
    void up()
    {
        if (!failed && t.goUp() == 0)
            failed = "tree navigation";
    }
};

static void sr_observer(SrTree &s, const en_sr_result *r)
{
    char uid[EN_SR_UID_MAX], model[96];

    if (r->device_uid[0])
        snprintf(uid, sizeof uid, "%s", r->device_uid);
    else
        en_sr_uid_from("echonetd device", uid);
    snprintf(model, sizeof model, "EchoNet-Dynamic (echonetd %s)", r->algorithm_version);
    s.next(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, CODE_DCM_ObserverType, "observer type");
    s.code(CODE_DCM_Device, "observer type");
    s.next(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, CODE_DCM_DeviceObserverUID,
           "device observer UID");
    s.text(uid, "device observer UID");
    s.next(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, CODE_DCM_DeviceObserverName,
           "device observer name");
    s.text("echonetd", "device observer name");
    s.next(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, CODE_DCM_DeviceObserverManufacturer,
           "device observer manufacturer");
    s.text("echonetd", "device observer manufacturer");
    s.next(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, CODE_DCM_DeviceObserverModelName,
           "device observer model name");
    s.text(model, "device observer model name");
}

/* The study's EF with how it was made (TID 5203 + TID 4019 rows), after
 * the item at the cursor; the cursor ends on it. */
static void sr_mean(SrTree &s, const en_sr_result *r)
{
    s.next(DSRTypes::RT_contains, DSRTypes::VT_Num, SR_LVEF, "LVEF");
    s.num(r->ef, SR_PERCENT, "LVEF value");
    s.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, CODE_SCT_MeasurementMethod, "method");
    s.code(SR_METHOD, "method");
    s.next(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, CODE_DCM_Derivation, "derivation");
    s.code(SR_MEAN, "derivation");
    s.next(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmName,
           "algorithm name");
    s.text(r->algorithm_name, "algorithm name");
    s.next(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmVersion,
           "algorithm version");
    s.text(r->algorithm_version, "algorithm version");
    for (int i = 0; i < r->nmodels; i++) {
        const en_sr_model *m = &r->models[i];
        char p[512];
        snprintf(p, sizeof p, "%s model %s, weights SHA-256 %s, %s", m->role, m->name,
                 m->sha256, m->origin);
        s.next(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmParameters,
               "algorithm parameters");
        s.text(p, "algorithm parameters");
    }
    s.up();
}

static void sr_beat(SrTree &s, const en_sr_result *r, int i)
{
    s.next(DSRTypes::RT_contains, DSRTypes::VT_Num, SR_LVEF, "beat LVEF");
    s.num(r->beats[i].ef, SR_PERCENT, "beat LVEF value");
    s.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, CODE_SCT_MeasurementMethod,
            "beat method");
    s.code(SR_METHOD, "beat method");
    s.next(DSRTypes::RT_hasAcqContext, DSRTypes::VT_Num, CODE_DCM_BeatNumber, "beat number");
    s.num(i + 1, SR_NO_UNITS, "beat number value", true);
    s.up();
}

static int sr_content(DSRDocument &doc, const en_sr_result *r, en_err *err)
{
    SrTree s(doc.getTree());
    char note[1400];

    if (s.t.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) == 0)
        return en_err_set(err, EN_EINVAL, "SR for study %s: cannot start the content tree",
                          r->pseudonym);
    s.check(s.t.getCurrentContentItem().setConceptName(
                DSRCodedEntryValue(CODE_DCM_AdultEchocardiographyProcedureReport)), "root");
    s.check(s.t.getCurrentContentItem().setTemplateIdentification("5200", "DCMR"), "template");
    s.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code,
            CODE_DCM_LanguageOfContentItemAndDescendants, "language");
    s.code(SR_ENGLISH, "language");
    sr_observer(s, r);
    /* The left ventricle section with one measurement group. */
    s.next(DSRTypes::RT_contains, DSRTypes::VT_Container, SR_FINDINGS, "findings");
    s.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, CODE_SCT_FindingSite, "finding site");
    s.code(SR_LEFT_VENTRICLE, "finding site");
    s.next(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_MeasurementGroup,
           "measurement group");
    s.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, SR_IMAGE_MODE, "image mode");
    s.code(SR_2D_MODE, "image mode");
    sr_mean(s, r);
    for (int i = 0; i < r->nbeats; i++)
        sr_beat(s, r, i);
    s.up();                                 /* the measurement group */
    s.up();                                 /* the findings */
    if (r->not_for_diagnosis) {
        s.next(DSRTypes::RT_contains, DSRTypes::VT_Text, CODE_DCM_Comment, "comment");
        s.text("NOT FOR DIAGNOSIS: made by echonetd's phantom-trained default models, which "
               "were trained on simulated echoes only. Do not use these numbers for patients.",
               "comment");
    }
    snprintf(note, sizeof note, "Method: %s.%s%s echonetd study reference %s, result version "
             "%d. Unverified: no person has checked this result.", r->method,
             r->notes[0] ? " Notes: " : "", r->notes, r->pseudonym, r->version);
    s.next(DSRTypes::RT_contains, DSRTypes::VT_Text, CODE_DCM_Comment, "comment");
    s.text(note, "comment");
    if (s.failed)
        return en_err_set(err, EN_EINVAL, "SR for study %s: DCMTK refused the %s content item",
                          r->pseudonym, s.failed);
    return EN_OK;
}

/* ---- writing -------------------------------------------------------------------- */

static int sr_save(DcmFileFormat &ff, const char *path, const char *what, const char *pseudonym,
                   en_err *err)
{
    en_atomic_file f;
    int rc = en_atomic_open(&f, path, what, err);

    if (rc)
        return rc;
    OFCondition c = ff.saveFile(f.tmp, EXS_LittleEndianExplicit);
    if (c.bad()) {
        en_atomic_discard(&f);
        return en_err_set(err, EN_EIO, "%s for study %s: writing %s: %s", what, pseudonym, path,
                          c.text());
    }
    return en_atomic_commit(&f, err);
}

/* The UIDs of this result version replace the ones DSRDocument made. */
static int sr_put(DcmItem *ds, const DcmTagKey &tag, const char *v, const char *what,
                  const char *pseudonym, en_err *err)
{
    if (ds->putAndInsertString(tag, v).bad())
        return en_err_set(err, EN_EINVAL, "SR for study %s: cannot set the %s", pseudonym, what);
    return EN_OK;
}

extern "C" int en_sr_write(const en_sr_patient *pt, const en_sr_result *r, const en_sr_uids *u,
                           const char *path, en_err *err)
{
    int rc;

    std::call_once(sr_once, sr_init_once);
    if ((rc = sr_check_input(pt, r, u, err)))
        return rc;
    try {
        DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
        DcmFileFormat ff;
        DcmDataset *ds = ff.getDataset();

        if ((rc = sr_header(doc, pt, r, err)) || (rc = sr_content(doc, r, err)))
            return rc;
        if (doc.getCodingSchemeIdentification().addItem(SR_LOCAL_SCHEME, "",
                "echonetd local codes", "echonetd").bad() || doc.completeDocument().bad())
            return en_err_set(err, EN_EINVAL, "SR for study %s: cannot complete the document",
                              r->pseudonym);
        OFCondition c = doc.write(*ds);
        if (c.bad())
            return en_err_set(err, EN_EINVAL, "SR for study %s: DCMTK cannot encode the "
                              "document: %s", r->pseudonym, c.text());
        if ((rc = sr_put(ds, DCM_SeriesInstanceUID, u->sr_series, "series UID", r->pseudonym,
                         err)) ||
            (rc = sr_put(ds, DCM_SOPInstanceUID, u->sr_instance, "instance UID", r->pseudonym,
                         err)) ||
            (r->institution[0] && (rc = sr_put(ds, DCM_InstitutionName, r->institution,
                                               "institution", r->pseudonym, err))))
            return rc;
        return sr_save(ff, path, "SR", r->pseudonym, err);
    } catch (const std::bad_alloc &) {
        return en_err_set(err, EN_ENOMEM, "SR for study %s: out of memory", r->pseudonym);
    }
}

/* ---- the Encapsulated PDF ---------------------------------------------------------- */

/* The PDF's bytes, padded to an even length with a NUL as OB requires;
 * *len is the PDF's own length. */
static int sr_read_pdf(const char *pdf_path, const char *pseudonym, std::vector<Uint8> &buf,
                       size_t *len, en_err *err)
{
    struct stat st;
    FILE *fp;

    if (stat(pdf_path, &st) != 0 || !S_ISREG(st.st_mode))
        return en_err_set(err, EN_ENOTFOUND, "PDF for study %s: %s: %s", pseudonym, pdf_path,
                          errno ? strerror(errno) : "not a file");
    if (st.st_size < 5 || st.st_size > SR_MAX_PDF_BYTES)
        return en_err_set(err, EN_EFORMAT, "PDF for study %s: %s: %lld bytes is not a report",
                          pseudonym, pdf_path, (long long)st.st_size);
    buf.resize((size_t)st.st_size + (st.st_size & 1));   /* OB: even length, NUL pad */
    if (!(fp = fopen(pdf_path, "rb")))
        return en_err_set(err, EN_EIO, "PDF for study %s: %s: %s", pseudonym, pdf_path,
                          strerror(errno));
    size_t n = fread(buf.data(), 1, (size_t)st.st_size, fp);
    fclose(fp);
    if (n != (size_t)st.st_size)
        return en_err_set(err, EN_EIO, "PDF for study %s: %s: short read", pseudonym, pdf_path);
    if (memcmp(buf.data(), "%PDF-", 5) != 0)
        return en_err_set(err, EN_EFORMAT, "PDF for study %s: %s is not a PDF file",
                          pseudonym, pdf_path);
    *len = n;
    return EN_OK;
}

extern "C" int en_sr_write_pdf(const en_sr_patient *pt, const en_sr_result *r,
                               const en_sr_uids *u, const char *pdf_path, const char *path,
                               en_err *err)
{
    int rc;

    std::call_once(sr_once, sr_init_once);
    if ((rc = sr_check_input(pt, r, u, err)))
        return rc;
    try {
        std::vector<Uint8> pdf;
        DcmFileFormat ff;
        DcmDataset *ds = ff.getDataset();
        char date[9], tim[7], tz[6], num[16], title[80];
        char now_d[9], now_t[7], now_z[6];
        OFString all = OFString(pt->patient_name) + pt->patient_id + pt->accession_number +
                       pt->study_id + r->institution;
        const char *cs = sr_charset(pt, all);
        size_t len = 0;

        if ((rc = sr_read_pdf(pdf_path, r->pseudonym, pdf, &len, err)))
            return rc;
        sr_times(r->made_ms, date, tim, tz);
        sr_times((int64_t)time(NULL) * 1000, now_d, now_t, now_z);
        snprintf(title, sizeof title, "EchoNet-Dynamic LVEF report v%d%s", r->version,
                 r->not_for_diagnosis ? " NOT FOR DIAGNOSIS" : "");
        struct { DcmTagKey tag; const char *v; const char *what; } attrs[] = {
            { DCM_SpecificCharacterSet, cs, "character set" },
            { DCM_SOPClassUID, UID_EncapsulatedPDFStorage, "SOP class" },
            { DCM_SOPInstanceUID, u->pdf_instance, "instance UID" },
            { DCM_InstanceCreationDate, now_d, "creation date" },
            { DCM_InstanceCreationTime, now_t, "creation time" },
            { DCM_TimezoneOffsetFromUTC, tz, "timezone" },
            { DCM_PatientName, pt->patient_name, "patient name" },
            { DCM_PatientID, pt->patient_id, "patient ID" },
            { DCM_PatientBirthDate, pt->patient_birth_date, "birth date" },
            { DCM_PatientSex, pt->patient_sex, "patient sex" },
            { DCM_StudyInstanceUID, pt->study_instance_uid, "Study Instance UID" },
            { DCM_StudyDate, pt->study_date, "study date" },
            { DCM_StudyTime, pt->study_time, "study time" },
            { DCM_ReferringPhysicianName, "", "referring physician" },
            { DCM_StudyID, pt->study_id, "study ID" },
            { DCM_AccessionNumber, pt->accession_number, "accession number" },
            { DCM_Modality, "DOC", "modality" },
            { DCM_SeriesInstanceUID, u->pdf_series, "series UID" },
            { DCM_SeriesDescription, title, "series description" },
            { DCM_Manufacturer, "echonetd", "manufacturer" },
            { DCM_InstitutionName, r->institution, "institution" },
            { DCM_ConversionType, "WSD", "conversion type" },
            { DCM_SoftwareVersions, r->algorithm_version, "software version" },
            { DCM_ContentDate, date, "content date" },
            { DCM_ContentTime, tim, "content time" },
            { DCM_AcquisitionDateTime, "", "acquisition date time" },
            /* The report names the study by pseudonym only. */
            { DCM_BurnedInAnnotation, "NO", "burned-in annotation" },
            { DCM_DocumentTitle, title, "document title" },
            { DCM_MIMETypeOfEncapsulatedDocument, "application/pdf", "MIME type" },
        };
        for (const auto &a : attrs) {
            if (a.tag == DCM_SpecificCharacterSet && !a.v[0])
                continue;
            if (a.tag == DCM_InstitutionName && !a.v[0])
                continue;
            if (ds->putAndInsertString(a.tag, a.v).bad())
                return en_err_set(err, EN_EINVAL, "PDF for study %s: the %s is not a valid "
                                  "DICOM value", r->pseudonym, a.what);
        }
        snprintf(num, sizeof num, "%d", 9500 + r->version % 500);
        if (ds->putAndInsertString(DCM_SeriesNumber, num).bad() ||
            ds->putAndInsertString(DCM_InstanceNumber, "1").bad() ||
            ds->insertEmptyElement(DCM_ConceptNameCodeSequence).bad() ||
            ds->putAndInsertUint32(DCM_EncapsulatedDocumentLength, (Uint32)len).bad() ||
            ds->putAndInsertUint8Array(DCM_EncapsulatedDocument, pdf.data(),
                                       (unsigned long)pdf.size()).bad())
            return en_err_set(err, EN_ENOMEM, "PDF for study %s: cannot build the data set",
                              r->pseudonym);
        return sr_save(ff, path, "PDF", r->pseudonym, err);
    } catch (const std::bad_alloc &) {
        return en_err_set(err, EN_ENOMEM, "PDF for study %s: out of memory", r->pseudonym);
    }
}
