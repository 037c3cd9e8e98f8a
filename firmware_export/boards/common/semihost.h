/* ARM semihosting for Cortex-M (BKPT 0xAB): console, host files and exit. */
#ifndef MCU_SEMIHOST_H
#define MCU_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of the image (they reach the shell through SYS_EXIT_EXTENDED). */
#define MCU_EXIT_OK 0
#define MCU_EXIT_MISMATCH 1
#define MCU_EXIT_STATUS 2   /* the library returned a non-OK status */
#define MCU_EXIT_HOST_IO 3  /* a semihosting file call failed */
#define MCU_EXIT_STACK 4    /* the painted stack was used up to its last word */
#define MCU_EXIT_FAULT 5    /* an exception other than reset was taken */

/* Open modes of SYS_OPEN. */
#define MCU_OPEN_RB 1
#define MCU_OPEN_WB 5

void mcu_puts(const char *s);
int mcu_open(const char *path, int mode);
int mcu_close(int handle);
long mcu_flen(int handle);
/* Both return the number of bytes transferred (semihosting returns the number NOT
   transferred; these convert). */
size_t mcu_read(int handle, void *buf, size_t len);
size_t mcu_write(int handle, const void *buf, size_t len);
/* The command line given with `-semihosting-config arg=...`; "" when there is none. */
const char *mcu_cmdline(void);
void mcu_exit(int code) __attribute__((noreturn));
void mcu_fault(uint32_t ipsr) __attribute__((noreturn));

#endif
