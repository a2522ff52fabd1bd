/*
 * test-dicom-errors.c - en_dicom_read's error paths, and one good file to show
 * the checks are not simply refusing everything.
 *
 * The test writes its own tiny Part 10 files (explicit VR little endian) into
 * a temporary folder, so it needs no generator: missing, empty, text, a
 * directory, each limit exceeded, a NumberOfFrames that lies, a truncated
 * file, no pixel data, Rows=0, a JPEG 2000 syntax, a raw dataset without
 * preamble.  Every error message must name the file and must never contain
 * the patient's name stored in the file.
 */
#include "en_dicom.h"
#include "tst.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATIENT "DOE^JANE"

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put16(buf *b, unsigned v)
{
    unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
    put(b, x, 2);
}

static void put32(buf *b, uint32_t v)
{
    unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24) };
    put(b, x, 4);
}

/* One explicit-VR element; strings are padded to even length as DICOM
 * requires (UI with NUL, others with space). */
static void el(buf *b, unsigned grp, unsigned elem, const char *vr, const void *val, size_t len)
{
    int long_form = !strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") || !strcmp(vr, "UN");
    size_t padded = len + (len & 1);

    put16(b, grp);
    put16(b, elem);
    put(b, vr, 2);
    if (long_form) {
        put16(b, 0);
        put32(b, (uint32_t)padded);
    } else {
        put16(b, (unsigned)padded);
    }
    put(b, val, len);
    if (len & 1)
        put(b, !strcmp(vr, "UI") || !strcmp(vr, "OB") ? "\0" : " ", 1);
}

static void el_str(buf *b, unsigned grp, unsigned elem, const char *vr, const char *s)
{
    el(b, grp, elem, vr, s, strlen(s));
}

static void el_us(buf *b, unsigned grp, unsigned elem, unsigned v)
{
    unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };
    el(b, grp, elem, "US", x, 2);
}

typedef struct spec {
    const char *xfer;
    const char *photometric;
    int rows, cols, frames_decl, frames_data;
    int with_pixels, with_meta;
    int encapsulated;
} spec;

static void meta(buf *b, const spec *s)
{
    buf g = { 0 };
    static const unsigned char version[2] = { 0, 1 };

    el(&g, 0x0002, 0x0001, "OB", version, 2);
    el_str(&g, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.3.1");
    el_str(&g, 0x0002, 0x0003, "UI", "1.2.3.4.5.6.7");
    el_str(&g, 0x0002, 0x0010, "UI", s->xfer);
    unsigned char zero[128] = { 0 };
    put(b, zero, 128);
    put(b, "DICM", 4);
    {
        unsigned char len[4] = { (unsigned char)g.n, (unsigned char)(g.n >> 8), (unsigned char)(g.n >> 16),
                                 (unsigned char)(g.n >> 24) };
        el(b, 0x0002, 0x0000, "UL", len, 4);
    }
    put(b, g.p, g.n);
    free(g.p);
}

static void pixels(buf *b, const spec *s)
{
    /* Rows=0 files still carry pixels, so that Rows is what is wrong. */
    size_t n = (size_t)s->frames_data * (size_t)(s->rows ? s->rows : 6) * (size_t)s->cols;
    unsigned char *px = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        px[i] = (unsigned char)(i * 7);
    if (!s->encapsulated) {
        el(b, 0x7FE0, 0x0010, "OB", px, n);
    } else {
        put16(b, 0x7FE0); put16(b, 0x0010); put(b, "OB", 2); put16(b, 0); put32(b, 0xFFFFFFFFu);
        put16(b, 0xFFFE); put16(b, 0xE000); put32(b, 0);          /* empty offset table */
        put16(b, 0xFFFE); put16(b, 0xE000); put32(b, 4); put(b, "\xff\x4f\xff\x51", 4);
        put16(b, 0xFFFE); put16(b, 0xE0DD); put32(b, 0);
    }
    free(px);
}

static void dataset(buf *b, const spec *s)
{
    char frames[16];

    snprintf(frames, sizeof frames, "%d", s->frames_decl);
    el_str(b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.3.1");
    el_str(b, 0x0008, 0x0018, "UI", "1.2.3.4.5.6.7");
    el_str(b, 0x0008, 0x0060, "CS", "US");
    el_str(b, 0x0010, 0x0010, "PN", PATIENT);
    el_str(b, 0x0010, 0x0020, "LO", "PID12345");
    el_str(b, 0x0018, 0x1063, "DS", "20");
    el_us(b, 0x0028, 0x0002, 1);
    el_str(b, 0x0028, 0x0004, "CS", s->photometric);
    el_str(b, 0x0028, 0x0008, "IS", frames);
    el_us(b, 0x0028, 0x0010, (unsigned)s->rows);
    el_us(b, 0x0028, 0x0011, (unsigned)s->cols);
    el_us(b, 0x0028, 0x0100, 8);
    el_us(b, 0x0028, 0x0101, 8);
    el_us(b, 0x0028, 0x0102, 7);
    el_us(b, 0x0028, 0x0103, 0);
    if (s->with_pixels)
        pixels(b, s);
}

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static const char *write_file(const char *name, const void *data, size_t n)
{
    const char *path = tmp_path(name);
    FILE *fp = fopen(path, "wb");

    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        perror(path);
        exit(99);
    }
    return path;
}

/* Writes the file described by s, cut to `keep` bytes when keep > 0. */
static const char *make(const char *name, const spec *s, long cut)
{
    buf b = { 0 };
    const char *path;

    if (s->with_meta)
        meta(&b, s);
    dataset(&b, s);
    path = write_file(name, b.p, cut > 0 ? b.n - (size_t)cut : b.n);
    free(b.p);
    return path;
}

static spec good_spec(void)
{
    spec s = { "1.2.840.10008.1.2.1", "MONOCHROME2", 6, 5, 3, 3, 1, 1, 0 };
    return s;
}

/* Reads path and checks the code and that the message names the file, holds
 * `needle` and leaks no identity. */
static void expect_err(const char *path, const en_dicom_limits *lim, int code, const char *needle)
{
    en_dicom_info info;
    en_dicom_identity id;
    en_frames f;
    en_err err;
    int rc = en_dicom_read(path, lim, &info, &id, &f, &err);

    CHECKF(rc == code, "%s: got %s (%s), want %s", path, en_err_name(rc), err.msg, en_err_name(code));
    CHECKF(err.code == rc, "%s: err.code %d != rc %d", path, err.code, rc);
    CHECKF(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    CHECKF(!needle || strstr(err.msg, needle), "message lacks '%s': %s", needle, err.msg);
    CHECKF(!strstr(err.msg, "DOE") && !strstr(err.msg, "PID12345"), "identity leaked: %s", err.msg);
    CHECK(f.data == NULL && f.nframes == 0);
    /* A data set without pixels keeps its identity, by contract, so the
     * pipeline can pseudonymise it as an instance of its study. */
    CHECK(code == EN_ENOTIMAGE || id.patient_name[0] == '\0');
}

static void test_not_dicom(void)
{
    const char *text = "Hello, this is a plain text file.\nIt is not DICOM at all.\n";

    expect_err(tmp_path("missing.dcm"), NULL, EN_EIO, "No such file");
    expect_err(write_file("empty.dcm", "", 0), NULL, EN_EFORMAT, "empty");
    expect_err(write_file("text.txt", text, strlen(text)), NULL, EN_EFORMAT, "not a DICOM file");
    expect_err(tmpdir, NULL, EN_EIO, "not a regular file");
}

static void test_good(void)
{
    spec s = good_spec();
    const char *path = make("good.dcm", &s, 0);
    en_dicom_info info;
    en_dicom_identity id;
    en_frames f;
    en_err err;
    int rc = en_dicom_read(path, NULL, &info, &id, &f, &err);

    CHECKF(rc == EN_OK, "%s", err.msg);
    if (rc != EN_OK)
        return;
    CHECK(f.nframes == 3 && f.rows == 6 && f.cols == 5 && f.channels == 1);
    CHECK(info.frames == 3 && info.rows == 6 && info.cols == 5 && info.channels == 1);
    for (size_t i = 0; i < 90; i++)
        CHECKF(f.data[i] == (unsigned char)(i * 7), "pixel %zu: %u", i, f.data[i]);
    CHECKF(info.fps > 49.99 && info.fps < 50.01, "fps %g", info.fps);
    CHECK(info.fps_source == EN_FPS_FRAME_TIME);
    CHECK(strcmp(en_fps_source_name(info.fps_source), "FrameTime") == 0);
    CHECK(strcmp(id.patient_name, PATIENT) == 0);
    CHECK(strcmp(id.patient_id, "PID12345") == 0);
    CHECK(strcmp(info.transfer_syntax_uid, "1.2.840.10008.1.2.1") == 0);
    CHECK(strcmp(info.photometric, "MONOCHROME2") == 0);
    CHECK(info.nwarnings == 0);
    en_frames_free(&f);

    /* err and id are optional. */
    rc = en_dicom_read(path, NULL, &info, NULL, &f, NULL);
    CHECK(rc == EN_OK);
    en_frames_free(&f);
}

static void test_monochrome1(void)
{
    spec s = good_spec();
    const char *path;
    en_dicom_info info;
    en_frames f;
    en_err err;

    s.photometric = "MONOCHROME1";
    path = make("mono1.dcm", &s, 0);
    CHECKF(en_dicom_read(path, NULL, &info, NULL, &f, &err) == EN_OK, "%s", err.msg);
    for (int i = 0; f.data && i < 90; i++)
        CHECKF(f.data[i] == (unsigned char)(255 - (unsigned char)(i * 7)), "pixel %d: %u", i, f.data[i]);
    en_frames_free(&f);
}

static void test_raw_dataset(void)
{
    spec s = good_spec();
    const char *path;
    en_dicom_info info;
    en_frames f;
    en_err err;

    s.with_meta = 0;
    path = make("raw.dcm", &s, 0);
    CHECKF(en_dicom_read(path, NULL, &info, NULL, &f, &err) == EN_OK, "%s", err.msg);
    CHECK(f.nframes == 3);
    en_frames_free(&f);
}

static void test_limits(void)
{
    spec s = good_spec();
    const char *path = make("limits.dcm", &s, 0);
    en_dicom_limits lim;

    en_dicom_limits_default(&lim);
    CHECK(lim.max_frames == 2000 && lim.max_rows == 2048 && lim.max_cols == 2048);
    lim.max_frames = 2;
    expect_err(path, &lim, EN_ELIMIT, "max_frames=2");
    en_dicom_limits_default(&lim);
    lim.max_rows = 5;
    expect_err(path, &lim, EN_ELIMIT, "max_rows=5");
    en_dicom_limits_default(&lim);
    lim.max_cols = 4;
    expect_err(path, &lim, EN_ELIMIT, "max_cols=4");
    en_dicom_limits_default(&lim);
    lim.max_pixel_bytes = 89;
    expect_err(path, &lim, EN_ELIMIT, "max_pixel_bytes=89");
    en_dicom_limits_default(&lim);
    lim.max_file_bytes = 100;
    expect_err(path, &lim, EN_ELIMIT, "max_file_bytes=100");

    /* A header promising a huge loop is refused before anything is allocated. */
    s.frames_decl = 5000;
    expect_err(make("many.dcm", &s, 0), NULL, EN_ELIMIT, "5000 frames exceed the limit max_frames=2000");
}

static void test_malformed(void)
{
    spec s = good_spec();

    s.frames_decl = 5; /* data for 3 */
    expect_err(make("lying.dcm", &s, 0), NULL, EN_EFORMAT, "NumberOfFrames");
    s = good_spec();
    expect_err(make("truncated.dcm", &s, 40), NULL, EN_EFORMAT, NULL);
    s.with_pixels = 0;
    expect_err(make("nopixels.dcm", &s, 0), NULL, EN_ENOTIMAGE, "no pixel data");
    s = good_spec();
    s.rows = 0;
    expect_err(make("rows0.dcm", &s, 0), NULL, EN_EFORMAT, "Rows");
    s = good_spec();
    s.photometric = "RGB";
    expect_err(make("spp.dcm", &s, 0), NULL, EN_EFORMAT, "SamplesPerPixel");
    s = good_spec();
    s.photometric = "HSV";
    expect_err(make("hsv.dcm", &s, 0), NULL, EN_EUNSUPPORTED, "HSV");
}

static void test_unsupported_syntax(void)
{
    spec s = good_spec();

    s.xfer = "1.2.840.10008.1.2.4.91";
    s.encapsulated = 1;
    s.frames_decl = 1;
    /* With OpenJPEG the 4-byte stream is refused as damaged, without it the
     * syntax is refused by name. */
    if (en_dicom_syntax_supported("1.2.840.10008.1.2.4.91"))
        expect_err(make("j2k.dcm", &s, 0), NULL, EN_EFORMAT, "JPEG 2000");
    else
        expect_err(make("j2k.dcm", &s, 0), NULL, EN_EUNSUPPORTED, "1.2.840.10008.1.2.4.91");
    CHECK(en_dicom_syntax_supported("1.2.840.10008.1.2.4.50") == 1);
    CHECK(en_dicom_syntax_supported("1.2.840.10008.1.2.4.999") == 0);
    CHECK(en_dicom_syntax_supported(NULL) == 0);
    s.xfer = "1.2.840.10008.1.2.4.999";
    expect_err(make("unknown-syntax.dcm", &s, 0), NULL, EN_EUNSUPPORTED, "1.2.840.10008.1.2.4.999");
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof tmpdir, "%s/test-dicom-errors.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 99;
    }
    test_not_dicom();
    test_good();
    test_monochrome1();
    test_raw_dataset();
    test_limits();
    test_malformed();
    test_unsupported_syntax();
    if (!tst_failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    TST_DONE();
}
