/* Bare-metal check of the ARMv6-M assembly requantizations on the core, against the cases of
 * requant_cases.h (written by test_mcu_kernels.py from firmware_export.quantmath):
 * - requant_cases: {acc2, multiplier, rnd, rshift, expected index}, through
 *   lenet_requant_index_v6m, and through lenet_requant_index_v6m_small where |acc2| < 2^23;
 * - block_cases: {q0, q1, q2, q3, multiplier, rnd, rshift, expected sum}, q0 and q1 with
 *   garbage in their top 8 bits (low-lane sums), through lenet_requant4_sum_v6m and
 *   probe_table.
 * Exits 0 when all match, 1, 2 or 3 at the first mismatch of each kind. */
#include "lenet_arith.h"
#include "requant_cases.h"

int main(void)
{
    int i;
    for (i = 0; i < REQUANT_CASES; ++i) {
        const int32_t *c = requant_cases[i];
        /* The functions read rq[1..3]: the case's multiplier, rnd and rshift. */
        if (lenet_requant_index_v6m(c[0], c) != c[4]) {
            return 1;
        }
        if (c[0] > -(1 << 23) && c[0] < (1 << 23) && lenet_requant_index_v6m_small(c[0], c) != c[4]) {
            return 2;
        }
    }
    for (i = 0; i < BLOCK_CASES; ++i) {
        const int32_t *c = block_cases[i];
        const int32_t rq[4] = {0, c[4], c[5], c[6]};
        if (lenet_requant4_sum_v6m(c[0], c[1], c[2], c[3], rq, probe_table) != c[7]) {
            return 3;
        }
    }
    return 0;
}
