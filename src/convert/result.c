/*
 * result.c - how a conversion is shown to people (a summary) and to scripts
 * (JSON).  Only non-identifying facts are in en_convert_result, so nothing
 * here can leak patient data.
 */
#include "en_convert.h"
#include "en_json.h"

#include <math.h>

#define RAD2DEG (180.0 / M_PI)

static void json_sector(en_json *j, const en_sector *s)
{
    en_json_begin_object(j, "sector");
    en_json_string(j, "method", en_sector_method_name(s->method));
    en_json_double(j, "apex_x", s->apex_x);
    en_json_double(j, "apex_y", s->apex_y);
    en_json_double(j, "angle_left_deg", s->angle_left * RAD2DEG);
    en_json_double(j, "angle_right_deg", s->angle_right * RAD2DEG);
    en_json_double(j, "radius_inner", s->radius_inner);
    en_json_double(j, "radius", s->radius);
    en_json_double(j, "top_y", s->top_y);
    en_json_begin_array(j, "bbox");
    en_json_int(j, NULL, s->x0);
    en_json_int(j, NULL, s->y0);
    en_json_int(j, NULL, s->x1);
    en_json_int(j, NULL, s->y1);
    en_json_end_array(j);
    en_json_double(j, "confidence", s->confidence);
    en_json_string(j, "detail", s->detail);
    en_json_end_object(j);
}

void en_convert_result_json(const en_convert_result *r, FILE *f)
{
    const en_dicom_info *i = &r->info;
    en_json j;

    en_json_init(&j, f, 2);
    en_json_begin_object(&j, NULL);
    en_json_string(&j, "pseudonym", r->pseudonym);
    en_json_string(&j, "output", r->avi_path);
    en_json_string(&j, "sop_class_uid", i->sop_class_uid);
    en_json_string(&j, "sop_class", i->sop_class_name);
    en_json_string(&j, "transfer_syntax_uid", i->transfer_syntax_uid);
    en_json_string(&j, "transfer_syntax", i->transfer_syntax_name);
    en_json_string(&j, "photometric", i->photometric);
    en_json_begin_object(&j, "source");
    en_json_int(&j, "rows", i->rows);
    en_json_int(&j, "cols", i->cols);
    en_json_int(&j, "frames", i->frames);
    en_json_int(&j, "samples_per_pixel", i->samples_per_pixel);
    en_json_int(&j, "bits_stored", i->bits_stored);
    en_json_int(&j, "ultrasound_regions", i->nregions);
    en_json_end_object(&j);
    en_json_double(&j, "fps", i->fps);
    en_json_string(&j, "fps_source", en_fps_source_name(i->fps_source));
    json_sector(&j, &r->sector);
    en_json_begin_object(&j, "video");
    en_json_int(&j, "frames", r->out_frames);
    en_json_int(&j, "size", r->out_size);
    en_json_string(&j, "codec", "mjpeg");
    en_json_end_object(&j);
    en_json_begin_object(&j, "timings_ms");
    en_json_double(&j, "read", r->ms_read);
    en_json_double(&j, "sector", r->ms_sector);
    en_json_double(&j, "write", r->ms_write);
    en_json_end_object(&j);
    en_json_begin_array(&j, "warnings");
    for (int k = 0; k < i->nwarnings; k++)
        en_json_string(&j, NULL, i->warnings[k]);
    en_json_end_array(&j);
    en_json_end_object(&j);
    en_json_finish(&j);
}

void en_convert_result_print(const en_convert_result *r, FILE *f)
{
    const en_dicom_info *i = &r->info;
    const en_sector *s = &r->sector;

    fprintf(f, "study      %s\n", r->pseudonym);
    fprintf(f, "source     %d frames, %dx%d (cols x rows), %s, %s\n",
            i->frames, i->cols, i->rows, i->photometric, i->sop_class_name);
    fprintf(f, "syntax     %s (%s)\n", i->transfer_syntax_name, i->transfer_syntax_uid);
    fprintf(f, "frame rate %.3g fps from %s\n", i->fps, en_fps_source_name(i->fps_source));
    fprintf(f, "sector     %s: apex (%.1f, %.1f), edges %.1f/%.1f deg, radius %.1f px, "
               "box %d,%d-%d,%d\n", en_sector_method_name(s->method), s->apex_x, s->apex_y,
            s->angle_left * RAD2DEG, s->angle_right * RAD2DEG, s->radius,
            s->x0, s->y0, s->x1, s->y1);
    if (s->detail[0])
        fprintf(f, "           %s\n", s->detail);
    fprintf(f, "output     %s (%d frames, %dx%d MJPEG)\n", r->avi_path, r->out_frames,
            r->out_size, r->out_size);
    for (int k = 0; k < i->nwarnings; k++)
        fprintf(f, "warning    %s\n", i->warnings[k]);
}
