/*
 * Cortex-M startup shared by every board (ARMv6-M compatible Thumb: runs on M0, M3, M4, M7).
 *
 * Reset_Handler paints the whole stack with MCU_STACK_PATTERN (for the high-water mark), copies
 * .data from flash, zeroes .bss, enables the FPU when the build uses one, calls main() and hands
 * main's return value to mcu_exit(), which ends the run through semihosting SYS_EXIT_EXTENDED.
 * No picolibc/newlib crt0: theirs loops forever after main.
 */
#include "mcu_stack.h"

    .syntax unified
    .thumb

    .section .vectors, "a", %progbits
    .align 2
    .global __vectors
__vectors:
    .word __stack_top           /* initial SP */
    .word Reset_Handler
    .word NMI_Handler
    .word HardFault_Handler
    .word MemManage_Handler     /* reserved on ARMv6-M */
    .word BusFault_Handler      /* reserved on ARMv6-M */
    .word UsageFault_Handler    /* reserved on ARMv6-M */
    .word 0, 0, 0, 0
    .word SVC_Handler
    .word DebugMon_Handler      /* reserved on ARMv6-M */
    .word 0
    .word PendSV_Handler
    .word SysTick_Handler
    .size __vectors, . - __vectors

    .section .text.Reset_Handler, "ax", %progbits
    .align 1
    .global Reset_Handler
    .thumb_func
    .type Reset_Handler, %function
Reset_Handler:
    /* Paint [__stack_bottom, sp) with the pattern. Nothing has used the stack yet. */
    bl mcu_stack_paint
    /* Copy .data (word aligned, whole words: see the linker script). */
    ldr r0, =__data_start
    ldr r1, =__data_end
    ldr r2, =__data_load
3:  cmp r0, r1
    bhs 4f
    ldr r3, [r2]
    str r3, [r0]
    adds r0, #4
    adds r2, #4
    b 3b
4:  /* Zero .bss. */
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    movs r2, #0
5:  cmp r0, r1
    bhs 6f
    str r2, [r0]
    adds r0, #4
    b 5b
6:
#if defined(__ARM_FP)
    /* The build uses the FPU (hard-float ABI): grant full access to CP10 and CP11. */
    ldr r0, =0xE000ED88
    ldr r1, [r0]
    ldr r2, =0x00F00000
    orrs r1, r2
    str r1, [r0]
    dsb
    isb
#endif
    bl main
    bl mcu_exit                 /* r0 = main's return value; never returns */
7:  b 7b
    .size Reset_Handler, . - Reset_Handler
    .pool

/* Every other exception is a failure: report it and exit with MCU_EXIT_FAULT. */
    .section .text.Default_Handler, "ax", %progbits
    .align 1
    .thumb_func
    .type Default_Handler, %function
Default_Handler:
    mrs r0, ipsr
    bl mcu_fault
8:  b 8b
    .size Default_Handler, . - Default_Handler

    .macro weak_handler name
    .weak \name
    .thumb_set \name, Default_Handler
    .endm
    weak_handler NMI_Handler
    weak_handler HardFault_Handler
    weak_handler MemManage_Handler
    weak_handler BusFault_Handler
    weak_handler UsageFault_Handler
    weak_handler SVC_Handler
    weak_handler DebugMon_Handler
    weak_handler PendSV_Handler
    weak_handler SysTick_Handler

/*
 * void mcu_stack_paint(void): paint [__stack_bottom, sp) with the pattern, where sp is the
 * caller's stack pointer (this function uses no stack), so that what runs next in the caller
 * can be measured with a scan from the bottom.
 */
    .section .text.mcu_stack_paint, "ax", %progbits
    .align 1
    .global mcu_stack_paint
    .thumb_func
    .type mcu_stack_paint, %function
mcu_stack_paint:
    ldr r0, =__stack_bottom
    mov r1, sp
    ldr r2, =MCU_STACK_PATTERN
1:  cmp r0, r1
    bhs 2f
    str r2, [r0]
    adds r0, #4
    b 1b
2:  bx lr
    .size mcu_stack_paint, . - mcu_stack_paint
    .pool
