/*
 * render.c - en_report_render: checks the input, draws the page once per
 * output (a PDF surface in points, an image surface scaled to 150 dpi for
 * the PNG) with the same drawing code, and puts the files in place.
 *
 * Both outputs are written to temporary files first and renamed only when
 * both are complete, so a failure leaves the previous report (if any)
 * untouched and no temporary behind.  Error messages name the output path,
 * never anything from the input but the pseudonym.
 */
#include "report_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cairo-pdf.h>

#include "config.h"

void en_report_input_init(en_report_input *in)
{
    memset(in, 0, sizeof *in);
    in->ef_mean = NAN;
    in->ef_sd = NAN;
    in->thresholds[0] = 50;
    in->thresholds[1] = 40;
    in->thresholds[2] = 35;
    in->ed.frame = -1;
    in->es.frame = -1;
}

/* An array of n items must be there when n > 0, and n never negative. */
static int check_array(const void *a, int n, const char *what, const en_report_input *in,
                       en_err *err)
{
    if (n < 0 || (n > 0 && !a))
        return en_err_set(err, EN_EINVAL,
                          "report for study %s: %s: %d items given but %s (a caller bug)",
                          in->pseudonym, what, n, n < 0 ? "the count is negative" : "no array");
    return EN_OK;
}

static int validate(const en_report_input *in, const char *pdf, const char *png, en_err *err)
{
    int rc;

    if (!in || !in->pseudonym || !*in->pseudonym)
        return en_err_set(err, EN_EINVAL, "report: no study pseudonym given");
    if ((!pdf || !*pdf) && (!png || !*png))
        return en_err_set(err, EN_EINVAL, "report for study %s: no output path given",
                          in->pseudonym);
    if ((rc = check_array(in->lv_size, in->n_frames, "LV sizes", in, err)) ||
        (rc = check_array(in->systoles, in->n_systoles, "systoles", in, err)) ||
        (rc = check_array(in->beats, in->n_beats, "beats", in, err)) ||
        (rc = check_array(in->flags, in->n_flags, "quality flags", in, err)) ||
        (rc = check_array(in->models, in->n_models, "models", in, err)) ||
        (rc = check_array(in->clips, in->n_clips, "clips", in, err)) ||
        (rc = check_array(in->keyclips, in->n_keyclips, "key clips", in, err)))
        return rc;
    return EN_OK;
}

/* Metrics without hinting: text measures the same on both surfaces, so
 * the PDF and the PNG wrap lines identically. */
static void setup(cairo_t *cr, cairo_antialias_t aa)
{
    cairo_font_options_t *fo = cairo_font_options_create();

    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_antialias(fo, aa);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
}

/* The result of drawing into o: a write error is reported with its errno
 * (by rep_out_commit), anything else as cairo's status. */
static int finish(cairo_status_t st, rep_out *o, en_err *err)
{
    if (st == CAIRO_STATUS_SUCCESS)
        return EN_OK;
    if (o->werrno)
        return rep_out_commit(o, err);
    rep_out_discard(o);
    return en_err_set(err, st == CAIRO_STATUS_NO_MEMORY ? EN_ENOMEM : EN_ECODEC,
                      "report '%s': drawing failed: %s", o->f.path, cairo_status_to_string(st));
}

static void pdf_metadata(cairo_surface_t *s, const en_report_input *in)
{
    char title[160], clean[64], date[32];
    struct tm tm;

    snprintf(title, sizeof title, "Echocardiogram EF report, study %s",
             rep_clean(in->pseudonym, clean, sizeof clean));
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, title);
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "echonetd " PACKAGE_VERSION);
    /* the processing time, not the rendering time: re-rendering a study
     * gives the same document */
    if (in->processed != 0 && gmtime_r(&in->processed, &tm) &&
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm))
        cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATE_DATE, date);
}

static int draw_pdf(const en_report_input *in, rep_out *o, en_err *err)
{
    cairo_surface_t *s = cairo_pdf_surface_create_for_stream(rep_out_write, o,
                                                             EN_REPORT_PAGE_W_PT,
                                                             EN_REPORT_PAGE_H_PT);
    cairo_t *cr;
    cairo_status_t st;

    pdf_metadata(s, in);
    cr = cairo_create(s);
    setup(cr, CAIRO_ANTIALIAS_DEFAULT);
    rep_draw_page(&(rep_page){cr, in});
    cairo_show_page(cr);
    st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);  /* writes the rest of the file */
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    return finish(st, o, err);
}

static int draw_png(const en_report_input *in, rep_out *o, en_err *err)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, EN_REPORT_PNG_W,
                                                    EN_REPORT_PNG_H);
    cairo_t *cr = cairo_create(s);
    cairo_status_t st;

    cairo_scale(cr, EN_REPORT_PNG_DPI / 72.0, EN_REPORT_PNG_DPI / 72.0);
    setup(cr, CAIRO_ANTIALIAS_GRAY);
    rep_draw_page(&(rep_page){cr, in});
    st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_write_to_png_stream(s, rep_out_write, o);
    cairo_surface_destroy(s);
    return finish(st, o, err);
}

int en_report_render(const en_report_input *in, const char *pdf_path,
                     const char *png_path, en_err *err)
{
    rep_out pdf = {.f = {.fd = -1}}, png = {.f = {.fd = -1}};
    int rc = validate(in, pdf_path, png_path, err);

    if (rc)
        return rc;
    if (pdf_path && *pdf_path) {
        if ((rc = rep_out_open(&pdf, pdf_path, err)) || (rc = draw_pdf(in, &pdf, err)))
            goto out;
    }
    if (png_path && *png_path) {
        if ((rc = rep_out_open(&png, png_path, err)) || (rc = draw_png(in, &png, err)))
            goto out;
    }
    /* both complete: only now replace the previous report */
    if (pdf.f.tmp && (rc = rep_out_commit(&pdf, err)))
        goto out;
    if (png.f.tmp)
        rc = rep_out_commit(&png, err);
out:
    rep_out_discard(&pdf);
    rep_out_discard(&png);
    return rc;
}
