/* Bare-metal check of lenet_requant_index_v6m (the ARMv6-M assembly requantization) on the
 * core: every case of requant_cases.h (written by test_mcu_kernels.py from
 * firmware_export.quantmath) is {acc2, multiplier, rnd, rshift, expected index}; exits 0 when
 * all match, 1 when one differs. */
#include "lenet_arith.h"
#include "requant_cases.h"

int main(void)
{
    int i;
    for (i = 0; i < REQUANT_CASES; ++i) {
        const int32_t *c = requant_cases[i];
        /* The function reads rq[1..3]: the case's multiplier, rnd and rshift. */
        if (lenet_requant_index_v6m(c[0], c) != c[4]) {
            return 1;
        }
    }
    return 0;
}
