/* Bare-metal check of the engine on a Cortex-M board: runs every vector of vectors.h (written
 * by the test from tests/c/vectors.h.j2) and exits 0 when every output equals TFLM's, 1 when
 * one differs, 2 when the engine returns an error. */
#include <string.h>

#include "lenet.h"
#include "vectors.h"

static union {
    int8_t bytes[LENET_SCRATCH_SIZE];
    int32_t align;
} scratch;

int main(void)
{
    int8_t out[LENET_OUTPUT_SIZE];
    int i;
    int bad = 0;
    for (i = 0; i < VECTOR_COUNT; ++i) {
        if (lenet_infer(vector_inputs[i], out, scratch.bytes) != LENET_OK) {
            return 2;
        }
        bad += memcmp(out, vector_expected[i], sizeof out) != 0;
    }
    return bad == 0 ? 0 : 1;
}
