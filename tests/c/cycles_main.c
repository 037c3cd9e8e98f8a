/* Calls cycles_kernel.S once between the trace markers of the mcu-test harness; exits 0 when
 * the kernel returned the non-zero sum its conditional return expects. */
#include <stdint.h>

int32_t cycles_kernel(const int32_t *p);

__attribute__((noinline)) void mcu_mark_quantize(void) { __asm volatile(""); }
__attribute__((noinline)) void mcu_mark_infer(void) { __asm volatile(""); }
__attribute__((noinline)) void mcu_mark_done(void) { __asm volatile(""); }

static volatile int32_t words[8] = {1, 2, 3, 4, 5, 6, 7, 8};

int main(void)
{
    int32_t sum;
    mcu_mark_quantize();
    mcu_mark_infer();
    sum = cycles_kernel((const int32_t *)words);
    mcu_mark_done();
    return sum != 0 ? 0 : 1;
}
