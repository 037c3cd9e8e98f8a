/*
 * Startup probe for a board package (built by tests/test_mcu_boards.py; a first check for a
 * new board): the startup code copies .data and zeroes .bss, and main's return value reaches
 * the shell as QEMU's exit code. Options:
 *   -DPROBE_BSS=N    an N-byte .bss array (fills the RAM: link-time overflow check)
 *   -DPROBE_ROM=N    an N-byte constant array (fills the flash)
 *   -DPROBE_FAULT    execute an undefined instruction: the fault handler must exit with 5
 * Prints "probe ok" and returns 37 when all is well.
 */
#include <stdint.h>
#include "semihost.h"
static volatile uint32_t initialised = 0x12345678u;   /* .data: copied from flash */
static volatile uint32_t zeroed[64];                  /* .bss: zeroed at reset */
#ifdef PROBE_BSS
static volatile uint8_t big_bss[PROBE_BSS];
#endif
#ifdef PROBE_ROM
static const uint8_t big_rom[PROBE_ROM] = {1};
#endif
int main(void)
{
    uint32_t i;
    if (initialised != 0x12345678u) {
        return 11;
    }
#ifdef PROBE_BSS
    big_bss[PROBE_BSS - 1] = 1;
#endif
#ifdef PROBE_ROM
    if (*(const volatile uint8_t *)&big_rom[0] != 1u) {
        return 13;
    }
#endif
    for (i = 0; i < 64u; i++) {
        if (zeroed[i] != 0u) {
            return 12;
        }
    }
#ifdef PROBE_FAULT
    __asm__ volatile("udf #0");   /* permanently undefined: HardFault on every core */
    return 0;
#else
    mcu_puts("probe ok\n");
    return 37;
#endif
}
