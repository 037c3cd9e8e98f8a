/* ARM semihosting calls used by the harness (see semihost.h). */
#include "semihost.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int semihost_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void mcu_puts(const char *s)
{
    (void)semihost_call(SYS_WRITE0, s);
}

static size_t cstrlen(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

int mcu_open(const char *path, int mode)
{
    uint32_t block[3];
    block[0] = (uint32_t)(uintptr_t)path;
    block[1] = (uint32_t)mode;
    block[2] = (uint32_t)cstrlen(path);
    return semihost_call(SYS_OPEN, block);
}

int mcu_close(int handle)
{
    uint32_t block[1];
    block[0] = (uint32_t)handle;
    return semihost_call(SYS_CLOSE, block);
}

long mcu_flen(int handle)
{
    uint32_t block[1];
    block[0] = (uint32_t)handle;
    return (long)semihost_call(SYS_FLEN, block);
}

size_t mcu_read(int handle, void *buf, size_t len)
{
    uint32_t block[3];
    int left;
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)(uintptr_t)buf;
    block[2] = (uint32_t)len;
    left = semihost_call(SYS_READ, block);
    if (left < 0 || (size_t)left > len) {
        return 0;
    }
    return len - (size_t)left;
}

size_t mcu_write(int handle, const void *buf, size_t len)
{
    uint32_t block[3];
    int left;
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)(uintptr_t)buf;
    block[2] = (uint32_t)len;
    left = semihost_call(SYS_WRITE, block);
    if (left < 0 || (size_t)left > len) {
        return 0;
    }
    return len - (size_t)left;
}

const char *mcu_cmdline(void)
{
    static char line[96];
    uint32_t block[2];
    block[0] = (uint32_t)(uintptr_t)line;
    block[1] = (uint32_t)(sizeof line - 1u);
    if (semihost_call(SYS_GET_CMDLINE, block) != 0) {
        line[0] = '\0';
    }
    line[sizeof line - 1u] = '\0';
    return line;
}

void mcu_exit(int code)
{
    /* Static, not on the stack: the exit code must reach the host even after the stack
       pointer has run off the bottom of RAM. */
    static uint32_t block[2];
    block[0] = ADP_STOPPED_APPLICATION_EXIT;
    block[1] = (uint32_t)code;
    for (;;) {
        (void)semihost_call(SYS_EXIT_EXTENDED, block);
    }
}

void mcu_fault(uint32_t ipsr)
{
    static const char hex[] = "0123456789abcdef";
    static char tail[4]; /* static: the stack may be gone */
    tail[0] = hex[(ipsr >> 4) & 0xFu];
    tail[1] = hex[ipsr & 0xFu];
    tail[2] = '\n';
    tail[3] = '\0';
    mcu_puts("MCU-FAULT exception=0x");
    mcu_puts(tail);
    mcu_exit(MCU_EXIT_FAULT);
}
