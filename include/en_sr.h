/*
 * en_sr.h - a study result as DICOM, for the lab's PACS and reporting
 * system: a Structured Report (Comprehensive SR, DICOM PS3.16 TID 5200
 * "Echocardiography Procedure Report") and the one-page report as an
 * Encapsulated PDF, both in the ORIGINAL study (C API over DCMTK's dcmsr;
 * docs/dicom-network.md says what goes where and why TID 5200).
 *
 * The input is two plain structs, independent of the results database:
 * en_sr_patient holds the identifying link only the key store has (study
 * UID, patient, accession number), en_sr_result what echonetd found (EF of
 * the study and of every beat, how, by which models).  Whoever has a study
 * result fills them; nothing here reads the database or the key store.
 *
 * The SR is VerificationFlag UNVERIFIED and PreliminaryFlag PRELIMINARY (no
 * person has verified it), names the algorithm as IHE AI Results does
 * (Algorithm Name, Version, and every model's SHA-256 as Algorithm
 * Parameters), and carries a "not for diagnosis" comment when
 * not_for_diagnosis is set (the phantom-trained default models).
 *
 * UIDs: each result version gets its own series and instance UIDs, derived
 * from a seed (en_sr_uids_derive), so writing the same version again gives
 * the same UIDs (a re-send replaces, a PACS never sees two objects for one
 * version) and a new version new ones.  Errors never quote identifying
 * values.
 */
#ifndef EN_SR_H
#define EN_SR_H

#include <stdint.h>

#include "en_err.h"

#define EN_SR_UID_MAX 65
#define EN_SR_MAX_BEATS 128
#define EN_SR_MAX_MODELS 4

/* The original study, from the key store.  Identifying: never log these. */
typedef struct en_sr_patient {
    char study_instance_uid[EN_SR_UID_MAX];   /* required */
    char patient_id[65];
    char patient_name[325];        /* DICOM PN as stored ("FAMILY^GIVEN") */
    char accession_number[17];
    char patient_birth_date[9];    /* optional, YYYYMMDD */
    char patient_sex[17];          /* optional: M, F, O */
    char study_date[9];            /* optional, keeps the study's own date */
    char study_time[17];
    char study_id[17];
    char specific_character_set[65]; /* of the strings above as given; ""
                                      * guesses: ASCII, else UTF-8 if valid,
                                      * else ISO 8859-1 */
} en_sr_patient;

typedef struct en_sr_model {
    char role[32];          /* "segmentation", "ejection fraction" */
    char name[64];          /* "DeepLabV3-ResNet50" */
    char sha256[65];        /* of the weights file, hex */
    char origin[256];       /* where the weights come from */
} en_sr_model;

typedef struct en_sr_beat {
    double ef;              /* percent */
    int ed_frame, es_frame; /* in the source clip; -1 unknown */
} en_sr_beat;

typedef struct en_sr_result {
    char pseudonym[33];     /* echonetd's study reference (not identifying) */
    int version;            /* result version, 1.. */
    int64_t made_ms;        /* when the result was made, Unix ms (ContentDate/Time) */
    double ef;              /* the study's EF, percent: mean over the beats */
    int nbeats;
    en_sr_beat beats[EN_SR_MAX_BEATS];
    char method[256];       /* how, in words ("R(2+1)D-18 on every beat ...") */
    char algorithm_name[64];     /* "echonetd EchoNet-Dynamic" */
    char algorithm_version[32];  /* echonetd's version */
    int nmodels;
    en_sr_model models[EN_SR_MAX_MODELS];
    int not_for_diagnosis;  /* made by the phantom-trained default models */
    char notes[512];        /* quality flags etc. in words; "" none */
    char device_uid[EN_SR_UID_MAX]; /* Device Observer UID; "" derives one */
    char institution[65];   /* optional, for the equipment module */
} en_sr_result;

typedef struct en_sr_uids {
    char sr_series[EN_SR_UID_MAX];
    char sr_instance[EN_SR_UID_MAX];
    char pdf_series[EN_SR_UID_MAX];
    char pdf_instance[EN_SR_UID_MAX];
} en_sr_uids;

/* UIDs "2.25.<decimal>" from SHA-256 of seed and each object's role (a
 * name-based UUID, RFC 9562 version 8).  Use a seed that is stable for one
 * result version and unique across versions, e.g. "<pseudonym>/v<version>". */
int en_sr_uids_derive(const char *seed, en_sr_uids *out, en_err *err);

/* One UID from a seed the same way (used for the Device Observer UID). */
void en_sr_uid_from(const char *seed, char out[EN_SR_UID_MAX]);

/* Writes the SR to path (atomically: a temporary file renamed into place).
 * EN_EINVAL names a missing or malformed input field (never its value). */
int en_sr_write(const en_sr_patient *pt, const en_sr_result *r, const en_sr_uids *u,
                const char *path, en_err *err);

/* Wraps the PDF at pdf_path as an Encapsulated PDF in the same study, at
 * path (atomically).  EN_EFORMAT when pdf_path is not a PDF. */
int en_sr_write_pdf(const en_sr_patient *pt, const en_sr_result *r, const en_sr_uids *u,
                    const char *pdf_path, const char *path, en_err *err);

#endif
