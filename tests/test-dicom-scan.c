/*
 * test-dicom-scan - prints en_dicom_scan_file's verdict for each argument:
 * "<state>\t<end>\t<size>\t<refuse>\t<detail>", one line per file, refuse
 * being the reader's refusal code ("EN_ELIMIT", "EN_EFORMAT") or "-".
 * Driven by tests/dicom_scan.py and tests/dicom_hostile.py.
 */
#include "en_dicom_scan.h"

#include <fcntl.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        en_dicom_scan s;
        en_err e;
        if (en_dicom_scan_file(AT_FDCWD, argv[i], &s, &e) != EN_OK) {
            printf("error\t0\t0\t-\t%s\n", e.msg);
            rc = 1;
            continue;
        }
        printf("%s\t%lld\t%lld\t%s\t%s\n", en_dicom_scan_state_name(s.state), s.end, s.size,
               s.refuse ? en_err_name(s.refuse) : "-", s.detail);
    }
    return rc;
}
