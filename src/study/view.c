/*
 * view.c - the view a DICOM file names for itself.
 *
 * Echo machines that describe their clips put the view in View Code
 * Sequence (0054,0220) with a code from DICOM CID 12226 "Echocardiography
 * Image View": SNOMED CT concept ids (scheme SCT) in current files, the
 * older SNOMED RT designators (scheme SRT, G-A19C ...) in many installed
 * machines.  A code we do not list is read from its meaning's words, so a
 * vendor's private code that says "Apical 4 Chamber" still counts; one that
 * says nothing we recognise is "other", never A4C.
 */
#include "en_study.h"

#include <ctype.h>
#include <string.h>

static const struct {
    const char *name, *text;
} views[EN_VIEW_COUNT] = {
    [EN_VIEW_UNKNOWN] = {"", "not named"},
    [EN_VIEW_A4C] = {"a4c", "apical four-chamber"},
    [EN_VIEW_A2C] = {"a2c", "apical two-chamber"},
    [EN_VIEW_A3C] = {"a3c", "apical long-axis (three-chamber)"},
    [EN_VIEW_A5C] = {"a5c", "apical five-chamber"},
    [EN_VIEW_PLAX] = {"plax", "parasternal long-axis"},
    [EN_VIEW_PSAX] = {"psax", "parasternal short-axis"},
    [EN_VIEW_SUBCOSTAL] = {"subcostal", "subcostal"},
    [EN_VIEW_SUPRASTERNAL] = {"suprasternal", "suprasternal"},
    [EN_VIEW_RV] = {"rv", "right-ventricular inflow or outflow"},
    [EN_VIEW_OTHER] = {"other", "another view"},
};

const char *en_view_name(en_view v)
{
    return (unsigned)v < EN_VIEW_COUNT ? views[v].name : "";
}

const char *en_view_text(en_view v)
{
    return (unsigned)v < EN_VIEW_COUNT ? views[v].text : views[EN_VIEW_UNKNOWN].text;
}

en_view en_view_parse(const char *name)
{
    for (int v = 1; name && *name && v < EN_VIEW_COUNT; v++)
        if (strcmp(name, views[v].name) == 0)
            return (en_view)v;
    return EN_VIEW_UNKNOWN;
}

/* CID 12226, both code systems. */
static const struct {
    const char *sct, *srt;
    en_view view;
} codes[] = {
    {"399214001", "G-A19C", EN_VIEW_A4C},
    {"399232001", "G-A19B", EN_VIEW_A2C},
    {"399339008", "G-0395", EN_VIEW_A3C},
    {"399139001", "G-0396", EN_VIEW_PLAX},
    {"399306005", "G-0397", EN_VIEW_PSAX},
    {"399239005", "G-0398", EN_VIEW_PSAX},   /* at the aortic valve */
    {"399371001", "G-0399", EN_VIEW_PSAX},   /* at the mitral chords */
    {"399036006", "G-039A", EN_VIEW_PSAX},   /* at the mitral valve */
    {"399271003", "G-039B", EN_VIEW_PSAX},   /* at the papillary muscles */
    {"443082005", "G-039C", EN_VIEW_RV},     /* RV inflow tract */
    {"399195005", "G-039D", EN_VIEW_RV},     /* RV outflow tract */
    {"399310008", "G-039E", EN_VIEW_SUBCOSTAL},
    {"399200001", "G-039F", EN_VIEW_SUBCOSTAL},
    {"399106004", "G-03A0", EN_VIEW_SUPRASTERNAL},
    {"399145009", "G-03A1", EN_VIEW_SUPRASTERNAL},
};

/* Lower-case words of s, separated by single spaces, into buf. */
static void words(const char *s, char *buf, size_t len)
{
    size_t n = 0;
    int space = 1;

    for (; s && *s && n + 1 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c)) {
            buf[n++] = (char)tolower(c);
            space = 0;
        } else if (!space) {
            buf[n++] = ' ';
            space = 1;
        }
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
}

static int has(const char *w, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = strstr(w, word); p; p = strstr(p + 1, word))
        if ((p == w || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return 1;
    return 0;
}

static en_view from_meaning(const char *meaning)
{
    char w[128];

    words(meaning, w, sizeof w);
    if (!w[0])
        return EN_VIEW_UNKNOWN;
    if (has(w, "subcostal") || has(w, "subxiphoid"))
        return EN_VIEW_SUBCOSTAL;
    if (has(w, "suprasternal"))
        return EN_VIEW_SUPRASTERNAL;
    if (has(w, "parasternal"))
        return has(w, "short") ? EN_VIEW_PSAX : has(w, "long") ? EN_VIEW_PLAX : EN_VIEW_OTHER;
    if (has(w, "apical") || has(w, "ap")) {
        if (has(w, "four") || has(w, "4") || has(w, "4ch") || has(w, "a4c"))
            return EN_VIEW_A4C;
        if (has(w, "two") || has(w, "2") || has(w, "2ch"))
            return EN_VIEW_A2C;
        if (has(w, "five") || has(w, "5") || has(w, "5ch"))
            return EN_VIEW_A5C;
        if (has(w, "three") || has(w, "3") || has(w, "long"))
            return EN_VIEW_A3C;
    }
    if (has(w, "a4c") || has(w, "ap4"))
        return EN_VIEW_A4C;
    if (has(w, "a2c") || has(w, "ap2"))
        return EN_VIEW_A2C;
    return EN_VIEW_OTHER;
}

en_view en_view_from_code(const char *scheme, const char *value, const char *meaning)
{
    if (value && *value) {
        int sct = scheme && (!strcmp(scheme, "SCT") || !strcmp(scheme, "SNM3"));
        int srt = scheme && (!strcmp(scheme, "SRT") || !strcmp(scheme, "99SDM"));
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
            if ((sct && !strcmp(value, codes[i].sct)) || (srt && !strcmp(value, codes[i].srt)) ||
                (!scheme && (!strcmp(value, codes[i].sct) || !strcmp(value, codes[i].srt))))
                return codes[i].view;
    }
    if (meaning && *meaning)
        return from_meaning(meaning);
    return value && *value ? EN_VIEW_OTHER : EN_VIEW_UNKNOWN;
}
