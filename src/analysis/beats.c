/*
 * beats.c - one beat per systole: its ED and ES frames and its EF clip.
 *
 * Upstream (beat_by_beat_analysis.R) pairs each systole s with the clip
 * starting at max(0, s - 32), so the 32-frame, period-2 clip is centred on
 * the systole, and keeps the beat only when that clip was evaluated.  Clips
 * are evaluated at starts 0 .. max(n, 64) - 63 (echo.py pads short videos
 * to 64 frames), so the last ~30 frames' systoles lose their beat.  Our
 * default moves such a clip back to the last evaluated start, when that
 * moves it by at most max_shift frames, and records the move; otherwise,
 * or with EN_CLIP_END_DROP, the beat is dropped as upstream drops it.
 *
 * ED is the largest LV after the previous systole (any detected systole,
 * kept or dropped) up to this one, or from frame 0 for the first beat;
 * the earliest such frame when tied.
 */
#include "analysis-int.h"

#include <math.h>

int en_analysis_clip_last_start(int n, const en_clip_params *p)
{
    int need = p->frames * p->period;
    int span = (p->frames - 1) * p->period + 1;

    return (n > need ? n : need) - span;
}

static int ed_frame(const double *size, int from, int to)
{
    int best = from;

    for (int i = from + 1; i <= to; i++)
        if (size[i] > size[best])
            best = i;
    return best;
}

/* Places the clip of systole s; returns 0 when the beat is dropped. */
static int place_clip(int s, int last, const en_clip_params *p, en_beat *b)
{
    int start = s - p->lead;

    if (start < 0)
        start = 0;
    b->shift = 0;
    if (start > last) {
        if (p->end_rule != EN_CLIP_END_SHIFT || start - last > p->max_shift)
            return 0;
        b->shift = start - last;
        start = last;
    }
    b->clip_start = start;
    return 1;
}

int en_analysis_plan_beats(const double *size, int n, const en_systoles *sys,
                           const en_clip_params *p, en_beat *out, int *count,
                           int *dropped, en_err *err)
{
    int last, kept = 0;

    if (!sys || !p || !out || !count || !dropped || (n > 0 && !size) ||
        sys->n_frames != n || sys->count < 0 ||
        sys->count > EN_ANALYSIS_MAX_SYSTOLES)
        return en_err_set(err, EN_EINVAL, "beats: bad arguments");
    last = en_analysis_clip_last_start(n, p);
    for (int k = 0; k < sys->count; k++) {
        int s = sys->frame[k], from = k ? sys->frame[k - 1] + 1 : 0;
        en_beat *b = &out[kept];
        if (s < from || s >= n)
            return en_err_set(err, EN_EINVAL,
                              "beats: systole %d at frame %d is outside 0..%d or "
                              "not after the previous one", k, s, n - 1);
        if (!place_clip(s, last, p, b))
            continue;
        b->systole = s;
        b->es_size = size[s];
        b->ed = ed_frame(size, from, s);
        b->ed_size = size[b->ed];
        b->ef = NAN;
        kept++;
    }
    *count = kept;
    *dropped = sys->count - kept;
    return EN_OK;
}
