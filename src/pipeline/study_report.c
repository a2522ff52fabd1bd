/*
 * study_report.c - a stored study result turned into the report's input
 * (see en_study_report in en_pipeline.h).
 *
 * Working from en_store_result, not from the live analysis, means the page
 * drawn right after processing and the page `echonetctl report` draws later
 * from the database are the same page.
 */
#include "en_pipeline.h"

#include "en_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FLAGS 32

void en_study_path(const en_config *cfg, const char *pseudonym, const char *ext,
                   char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s%s", cfg->output_dir, pseudonym, ext);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
}

static int phantom(const en_store_model *m)
{
    return strstr(m->origin, "phantom") != NULL;
}

static int flags_of(const en_store_result *r, en_report_flag *out)
{
    int n = 0;
    for (unsigned bit = 0; bit < 32 && n < MAX_FLAGS; bit++) {
        unsigned f = 1u << bit;
        if ((r->flags & f) && en_analysis_flag_name(f)) {
            out[n].name = en_analysis_flag_name(f);
            out[n].explanation = en_analysis_flag_text(f);
            n++;
        }
    }
    return n;
}

static int build_beats(const en_store_result *r, en_report_beat **out)
{
    en_report_beat *b = calloc((size_t)(r->nbeats > 0 ? r->nbeats : 1), sizeof *b);
    if (!b)
        return EN_ENOMEM;
    for (int i = 0; i < r->nbeats; i++) {
        b[i].systole_frame = r->beats[i].systole_frame;
        b[i].clip_start = r->beats[i].clip_start;
        b[i].ed_frame = r->beats[i].ed_frame == EN_STORE_NONE ? -1 : r->beats[i].ed_frame;
        b[i].es_frame = r->beats[i].systole_frame;
        b[i].ef = r->beats[i].ef;
        b[i].shifted = r->beats[i].shift != 0;
    }
    *out = b;
    return EN_OK;
}

int en_study_report(const en_config *cfg, const en_store_result *r,
                    const en_study_keyframes *k, char *pdf, char *png, size_t len,
                    en_err *err)
{
    en_report_input in;
    en_report_beat *beats = NULL;
    en_report_flag flags[MAX_FLAGS];
    en_report_model models[2];
    double *sizes = NULL;
    int *systoles = NULL, nsys = 0, rc;

    pdf[0] = png[0] = '\0';
    if (!cfg->report_pdf && !cfg->report_png)
        return EN_OK;
    sizes = malloc((size_t)(r->nframes > 0 ? r->nframes : 1) * sizeof *sizes);
    systoles = malloc((size_t)(r->nframes > 0 ? r->nframes : 1) * sizeof *systoles);
    if (!sizes || !systoles || build_beats(r, &beats) != EN_OK) {
        free(sizes);
        free(systoles);
        return en_err_set(err, EN_ENOMEM, "study %s: out of memory for the report", r->pseudonym);
    }
    for (int i = 0; i < r->nframes; i++) {
        sizes[i] = r->frames[i].lv_size < 0 ? NAN : r->frames[i].lv_size;
        if (r->frames[i].systole)
            systoles[nsys++] = i;
    }
    en_report_input_init(&in);
    in.pseudonym = r->pseudonym;
    in.processed = r->finished_ms > 0 ? (time_t)(r->finished_ms / 1000) : time(NULL);
    in.src_frames = r->src_frames;
    in.src_rows = r->src_rows;
    in.src_cols = r->src_cols;
    in.fps = r->fps;
    in.fps_source = r->fps_source;
    in.sector_method = r->sector_method;
    in.lv_size = sizes;
    in.n_frames = r->nframes;
    in.systoles = systoles;
    in.n_systoles = nsys;
    in.beats = beats;
    in.n_beats = r->nbeats;
    in.ef_mean = r->ef_mean;
    in.ef_sd = r->ef_sd;
    in.ef_class = r->ef_class[0] ? r->ef_class : NULL;
    in.thresholds[0] = r->threshold_reduced;
    in.thresholds[1] = r->threshold_low;
    in.thresholds[2] = r->threshold_very_low;
    if (r->nbeats == 0)
        in.no_ef_reason = "no beat with a complete clip was found";
    in.flags = flags;
    in.n_flags = flags_of(r, flags);
    models[0] = (en_report_model){ "segmentation", r->seg_model.architecture, r->seg_model.sha256,
                                   r->seg_model.origin, phantom(&r->seg_model) };
    models[1] = (en_report_model){ "ejection fraction", r->ef_model.architecture, r->ef_model.sha256,
                                   r->ef_model.origin, phantom(&r->ef_model) };
    in.models = models;
    in.n_models = 2;
    if (k && k->ed >= 0 && k->es >= 0) {
        in.ed = (en_report_keyframe){ k->ed, k->ed_image, k->ed_mask };
        in.es = (en_report_keyframe){ k->es, k->es_image, k->es_mask };
    }
    if (cfg->report_pdf)
        en_study_path(cfg, r->pseudonym, ".pdf", pdf, len);
    if (cfg->report_png)
        en_study_path(cfg, r->pseudonym, ".png", png, len);
    rc = en_report_render(&in, pdf[0] ? pdf : NULL, png[0] ? png : NULL, err);
    if (rc != EN_OK)
        pdf[0] = png[0] = '\0';
    free(sizes);
    free(systoles);
    free(beats);
    return rc;
}
