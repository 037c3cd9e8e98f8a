/* Reads pairs "a m" on stdin and prints lenet_mulhi(a, m) and the fast requantization built
 * on it, for the comparison with firmware_export.quantmath in test_export_kernels.py. */
#include <stdio.h>

#include "lenet_arith.h"

int main(void)
{
    long a, m;
    while (scanf("%ld %ld", &a, &m) == 2) {
        printf("%ld %ld\n", (long)lenet_mulhi((int32_t)a, (int32_t)m),
               (long)lenet_requantize_fast((int32_t)a, (int32_t)m, 1 << 9, 10));
    }
    return 0;
}
