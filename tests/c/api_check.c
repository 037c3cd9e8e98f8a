/*
 * Robustness of the public API of a generated engine (prefix "lenet"): bad pointers and
 * misaligned scratch give statuses, never crashes. Exits 0 when every check passes.
 */
#include <stdio.h>
#include <string.h>

#include "lenet.h"

static union {
    int8_t bytes[LENET_SCRATCH_SIZE + 8];
    int32_t align;
} scratch;

#define CHECK(cond)                                              \
    do {                                                         \
        if (!(cond)) {                                           \
            printf("FAILED: %s (line %d)\n", #cond, __LINE__);   \
            return 1;                                            \
        }                                                        \
    } while (0)

int main(void)
{
    static int8_t input[LENET_INPUT_SIZE];
    int8_t output[LENET_OUTPUT_SIZE];
    int8_t untouched[LENET_OUTPUT_SIZE];
    int cls;
    memset(input, 0, sizeof input);
    memset(output, 0x55, sizeof output);
    memcpy(untouched, output, sizeof output);

    CHECK(lenet_infer(NULL, output, scratch.bytes) == LENET_ERROR_NULL_POINTER);
    CHECK(lenet_infer(input, NULL, scratch.bytes) == LENET_ERROR_NULL_POINTER);
    CHECK(lenet_infer(input, output, NULL) == LENET_ERROR_NULL_POINTER);
    CHECK(lenet_infer(input, output, scratch.bytes + 1) == LENET_ERROR_MISALIGNED_SCRATCH);
    CHECK(memcmp(output, untouched, sizeof output) == 0);
    CHECK(lenet_predict(NULL, scratch.bytes) == (int)LENET_ERROR_NULL_POINTER);
    CHECK(lenet_predict(input, NULL) == (int)LENET_ERROR_NULL_POINTER);
    CHECK(lenet_predict(input, scratch.bytes + 2) == (int)LENET_ERROR_MISALIGNED_SCRATCH);

    CHECK(lenet_infer(input, output, scratch.bytes) == LENET_OK);
    cls = lenet_predict(input, scratch.bytes);
    CHECK(cls >= 0 && cls < LENET_OUTPUT_SIZE);
    {
        int best = 0;
        int i;
        for (i = 1; i < LENET_OUTPUT_SIZE; ++i) {
            if (output[i] > output[best]) {
                best = i;
            }
        }
        CHECK(cls == best);
    }
#ifdef LENET_MNIST_PIXELS
    {
        static const uint8_t pixels[LENET_MNIST_PIXELS];
        memset(input, 7, sizeof input);
        lenet_quantize_mnist(NULL, input);
        lenet_quantize_mnist(pixels, NULL);
        CHECK(input[0] == 7 && input[LENET_INPUT_SIZE - 1] == 7);
        lenet_quantize_mnist(pixels, input);
        CHECK(input[0] == (int8_t)LENET_INPUT_ZERO_POINT);
    }
#endif
    printf("api ok\n");
    return 0;
}
