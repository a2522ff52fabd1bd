/*
 * test-dicom-dump.c - builds tests/dicom-dump, the probe the Python DICOM tests
 * drive: it reads one file with en_dicom_read, writes the decoded frames raw
 * (en_frames layout) to --out, and prints the info as one JSON line.
 *
 *   dicom-dump [--out FILE] [--identity] [--max-frames N] [--max-rows N]
 *              [--max-cols N] [--max-file-bytes N] [--max-pixel-bytes N] DICOM
 *   dicom-dump --supports TRANSFER-SYNTAX-UID     (prints yes or no)
 *
 * On failure it prints "EN_ECODE: message" as exactly one line on stderr and
 * exits 1, which is what the corpus test holds the reader to.  Usage errors
 * exit 2.  Identity is printed only with --identity (tests only).
 */
#include "en_dicom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_str(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(fp, "\\u%04x", ch);
        else
            fputc(ch, fp);
    }
    fputc('"', fp);
}

static void json_kv_str(FILE *fp, const char *key, const char *val)
{
    fprintf(fp, "\"%s\":", key);
    json_str(fp, val);
    fputc(',', fp);
}

static void print_regions(FILE *fp, const en_dicom_info *in)
{
    fputs("\"regions\":[", fp);
    for (int i = 0; i < in->nregions; i++) {
        const en_us_region *r = &in->regions[i];
        fprintf(fp, "%s{\"x0\":%d,\"y0\":%d,\"x1\":%d,\"y1\":%d,\"spatial_format\":%d,"
                "\"data_type\":%d,\"flags\":%u,\"has_reference\":%d,\"ref_x\":%d,\"ref_y\":%d,"
                "\"delta_x\":%.17g,\"delta_y\":%.17g,\"units_x\":%d,\"units_y\":%d}",
                i ? "," : "", r->x0, r->y0, r->x1, r->y1, r->spatial_format, r->data_type,
                (unsigned)r->flags, r->has_reference, r->ref_x, r->ref_y, r->delta_x, r->delta_y,
                r->units_x, r->units_y);
    }
    fputs("],", fp);
}

static void print_identity(FILE *fp, const en_dicom_identity *id)
{
    fputs("\"identity\":{", fp);
    json_kv_str(fp, "study_instance_uid", id->study_instance_uid);
    json_kv_str(fp, "series_instance_uid", id->series_instance_uid);
    json_kv_str(fp, "sop_instance_uid", id->sop_instance_uid);
    json_kv_str(fp, "patient_name", id->patient_name);
    json_kv_str(fp, "patient_id", id->patient_id);
    json_kv_str(fp, "patient_birth_date", id->patient_birth_date);
    json_kv_str(fp, "accession_number", id->accession_number);
    json_kv_str(fp, "study_date", id->study_date);
    json_kv_str(fp, "study_time", id->study_time);
    fputs("\"institution_name\":", fp);
    json_str(fp, id->institution_name);
    fputs("},", fp);
}

static void print_info(FILE *fp, const en_dicom_info *in, const en_dicom_identity *id)
{
    fputc('{', fp);
    json_kv_str(fp, "sop_class_uid", in->sop_class_uid);
    json_kv_str(fp, "sop_class_name", in->sop_class_name);
    json_kv_str(fp, "transfer_syntax_uid", in->transfer_syntax_uid);
    json_kv_str(fp, "transfer_syntax_name", in->transfer_syntax_name);
    json_kv_str(fp, "photometric", in->photometric);
    json_kv_str(fp, "modality", in->modality);
    fprintf(fp, "\"rows\":%d,\"cols\":%d,\"frames\":%d,\"samples_per_pixel\":%d,"
            "\"bits_allocated\":%d,\"bits_stored\":%d,\"planar_configuration\":%d,\"channels\":%d,"
            "\"fps\":%.17g,", in->rows, in->cols, in->frames, in->samples_per_pixel,
            in->bits_allocated, in->bits_stored, in->planar_configuration, in->channels, in->fps);
    json_kv_str(fp, "fps_source", en_fps_source_name(in->fps_source));
    print_regions(fp, in);
    if (id)
        print_identity(fp, id);
    fputs("\"warnings\":[", fp);
    for (int i = 0; i < in->nwarnings; i++) {
        if (i)
            fputc(',', fp);
        json_str(fp, in->warnings[i]);
    }
    fputs("]}\n", fp);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int usage(void)
{
    fputs("usage: dicom-dump [--out FILE] [--identity] [--max-frames N] [--max-rows N] [--max-cols N]"
          " [--max-file-bytes N] [--max-pixel-bytes N] DICOM\n", stderr);
    return 2;
}

static int write_frames(const char *out, const en_frames *f)
{
    size_t n = (size_t)f->nframes * en_frames_frame_bytes(f);
    FILE *fp = fopen(out, "wb");

    if (!fp || fwrite(f->data, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "dicom-dump: cannot write %s: %s\n", out, strerror(errno));
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    en_dicom_limits lim;
    en_dicom_info info;
    en_dicom_identity id;
    en_frames frames;
    en_err err;
    const char *out = NULL, *path = NULL;
    int show_id = 0, rc;

    en_dicom_limits_default(&lim);
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        const char *a = argv[i];
        if (!strcmp(a, "--identity")) {
            show_id = 1;
            continue;
        }
        if (a[0] != '-' && !path) {
            path = a;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(a, "--supports")) {
            puts(en_dicom_syntax_supported(argv[i + 1]) ? "yes" : "no");
            return 0;
        }
        if (!strcmp(a, "--out")) {
            out = argv[++i];
            continue;
        }
        if (parse_u64(argv[++i], &v))
            return usage();
        if (!strcmp(a, "--max-frames")) lim.max_frames = (uint32_t)v;
        else if (!strcmp(a, "--max-rows")) lim.max_rows = (uint32_t)v;
        else if (!strcmp(a, "--max-cols")) lim.max_cols = (uint32_t)v;
        else if (!strcmp(a, "--max-file-bytes")) lim.max_file_bytes = v;
        else if (!strcmp(a, "--max-pixel-bytes")) lim.max_pixel_bytes = v;
        else return usage();
    }
    if (!path)
        return usage();
    rc = en_dicom_read(path, &lim, &info, &id, &frames, &err);
    if (rc != EN_OK) {
        /* One line, whatever the message holds. */
        for (char *p = err.msg; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
        return 1;
    }
    print_info(stdout, &info, show_id ? &id : NULL);
    rc = out ? write_frames(out, &frames) : 0;
    en_frames_free(&frames);
    return rc;
}
