/* Stack painting shared by startup.S and the harness (assembler-safe: macros only). */
#ifndef MCU_STACK_H
#define MCU_STACK_H

/* Every word of the stack holds this value until something writes it. */
#define MCU_STACK_PATTERN 0xC5A5C5A5

#endif
