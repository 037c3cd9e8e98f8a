/*
 * A small Cortex-M4 function with a known cycle count under the model of
 * firmware_export/mcu/cycles.py (tests/mcu/test_cycles.py computes it by hand from the
 * Cortex-M4 TRM table): a push, a loop of two pipelined loads and an SMLAD taken twice and
 * not taken once, a load double, an IT block and a conditional return.
 * int32_t cycles_kernel(const int32_t *p): p points to 8 words; returns a non-zero sum.
 */
    .syntax unified
    .thumb
    .section .text.cycles_kernel, "ax", %progbits
    .align 2
    .global cycles_kernel
    .thumb_func
    .type cycles_kernel, %function
cycles_kernel:
    push {r4, r5, lr}
    movs r3, #3
    movs r2, #0
1:  ldr r4, [r0], #4
    ldr r5, [r0], #4
    smlad r2, r4, r5, r2
    subs r3, #1
    bne 1b
    ldrd r4, r5, [r0]
    add r2, r4
    adds r0, r2, r5
    cmp r0, #0
    it ne
    popne {r4, r5, pc}
    movs r0, #0
    pop {r4, r5, pc}
    .size cycles_kernel, . - cycles_kernel
