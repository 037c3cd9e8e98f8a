/* Reads "input_multiplier input_left_shift diff_min" lines on stdin and prints, per line, the
 * exp that an export-c --optimize size softmax computes for max - x = 0..255, for the
 * comparison with firmware_export.quantmath's table in test_export_kernels.py. The kernel's
 * file is included to reach its static function. */
#include <stdio.h>

#include "lenet_softmax_s8.c"

int main(void)
{
    long multiplier, left_shift, diff_min;
    while (scanf("%ld %ld %ld", &multiplier, &left_shift, &diff_min) == 3) {
        lenet_softmax_t p;
        int32_t d;
        p.rows = 1;
        p.depth = 1;
        p.input_multiplier = (int32_t)multiplier;
        p.input_left_shift = (int32_t)left_shift;
        p.diff_min = (int32_t)diff_min;
        for (d = 0; d < 256; ++d) {
            printf(d ? " %ld" : "%ld", (long)lenet_softmax_exp(&p, d));
        }
        printf("\n");
    }
    return 0;
}
