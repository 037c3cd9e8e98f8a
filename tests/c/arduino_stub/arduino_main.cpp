/*
 * The stand-in core for running an example sketch bare-metal under QEMU (with the mcu-test
 * board's startup.S and semihost.c): Serial writes to the semihosting console, main() runs
 * setup() once and returns (exit code 0) instead of calling loop() forever.
 */
#include "Arduino.h"

extern "C" {
#include "semihost.h"
int main(void);
}

ArduinoStubSerial Serial;

void ArduinoStubSerial::begin(unsigned long baud) { (void)baud; }

size_t ArduinoStubSerial::print(const char *text)
{
    mcu_puts(text);
    size_t n = 0;
    while (text[n] != '\0') {
        ++n;
    }
    return n;
}

size_t ArduinoStubSerial::print(int value)
{
    char buf[12];
    char *p = buf + sizeof buf;
    unsigned int u = value < 0 ? 0u - (unsigned int)value : (unsigned int)value;
    *--p = '\0';
    do {
        *--p = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (value < 0) {
        *--p = '-';
    }
    return print(p);
}

size_t ArduinoStubSerial::println(const char *text) { return print(text) + print("\n"); }

size_t ArduinoStubSerial::println(int value) { return print(value) + print("\n"); }

int main(void)
{
    setup();
    return 0;
}
