/*
 * A minimal stand-in for the Arduino core's Arduino.h, enough to compile an example sketch
 * of `lenet-edge package --format arduino` the way the Arduino builder does (the .ino as
 * C++ with Arduino.h included first). It declares only what the sketch uses: Serial
 * (begin, print, println) and the sketch's setup() and loop(). Not the Arduino API.
 */
#ifndef ARDUINO_STUB_ARDUINO_H
#define ARDUINO_STUB_ARDUINO_H

#include <stddef.h>
#include <stdint.h>

class ArduinoStubSerial {
public:
    void begin(unsigned long baud);
    size_t print(const char *text);
    size_t print(int value);
    size_t println(const char *text);
    size_t println(int value);
};

extern ArduinoStubSerial Serial;

void setup(void);
void loop(void);

#endif
