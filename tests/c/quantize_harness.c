/*
 * usage: quantize_harness RAW OUT
 *   RAW  N * 784 bytes of raw MNIST pixels; OUT receives N * ENGINE_INPUT_SIZE int8 values
 *   computed by the generated ENGINE_QUANTIZE (<prefix>_quantize_mnist).
 */
#include <stdio.h>

#include ENGINE_HEADER

int main(int argc, char **argv)
{
    static uint8_t raw[784];
    static int8_t input[ENGINE_INPUT_SIZE];
    FILE *in;
    FILE *out;
    if (argc != 3) {
        return 1;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        return 1;
    }
    while (fread(raw, 1, sizeof raw, in) == sizeof raw) {
        ENGINE_QUANTIZE(raw, input);
        if (fwrite(input, 1, sizeof input, out) != sizeof input) {
            return 1;
        }
    }
    fclose(in);
    fclose(out);
    return 0;
}
