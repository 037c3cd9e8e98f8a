/*
 * Fuzz harness for a generated standalone engine (prefix "lenet"); built by the tests and by
 * scripts/fuzz_engine.py with -fsanitize=address,undefined -fno-sanitize-recover=all.
 *
 *   fuzz_engine files INPUTS OUTPUTS
 *       every LENET_INPUT_SIZE-byte record of INPUTS -> LENET_OUTPUT_SIZE bytes in OUTPUTS
 *   fuzz_engine random SEED N OUTPUTS SAMPLE_EVERY SAMPLE_INPUTS
 *       N generated inputs (seeded; eight families, below); writes every output, and every
 *       SAMPLE_EVERY'th input to SAMPLE_INPUTS so that the caller can check it against TFLM
 *   fuzz_engine api
 *       NULL pointers and misaligned scratch in every public function
 *
 * For every input the harness also checks what the caller cannot see: lenet_infer returns
 * LENET_OK and leaves its input untouched; every 4th input, lenet_predict equals the argmax of
 * the scores (first on ties); every 16th, the same input run with scratch pre-filled with
 * another pattern gives the same scores (no read of uninitialised scratch). Buffers are
 * malloc'd at their exact sizes so that AddressSanitizer sees any overrun.
 * Prints a one-line summary and exits 0, or prints what failed and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet.h"

static int8_t *input;
static int8_t *input_copy;
static int8_t *output;
static int8_t *output2;
static void *scratch;

static uint64_t rng_state;

static uint64_t next_u64(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int8_t clamp8(long v)
{
    return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

/* Eight families of inputs, by case number. */
static void generate(uint64_t seed, long i)
{
    const int h = LENET_INPUT_HEIGHT, w = LENET_INPUT_WIDTH, c = LENET_INPUT_CHANNELS;
    int k;
    int y;
    int x;
    rng_state = seed * 0x100000001B3ull + (uint64_t)i;
    (void)next_u64();
    switch (i % 8) {
    case 0: /* uniform over all int8 values */
        for (k = 0; k < LENET_INPUT_SIZE; ++k) {
            input[k] = (int8_t)(next_u64() & 0xFF);
        }
        break;
    case 1: { /* narrow noise around a random level */
        const long centre = (long)(next_u64() % 256) - 128;
        const long spread = (long)(next_u64() % 16) + 1;
        for (k = 0; k < LENET_INPUT_SIZE; ++k) {
            input[k] = clamp8(centre + (long)(next_u64() % (uint64_t)(2 * spread + 1)) - spread);
        }
        break;
    }
    case 2: { /* MNIST-like: background -128 with a few bright strokes */
        const int strokes = 1 + (int)(next_u64() % 6);
        int s;
        memset(input, -128, LENET_INPUT_SIZE);
        for (s = 0; s < strokes; ++s) {
            int py = (int)(next_u64() % (uint64_t)h);
            int px = (int)(next_u64() % (uint64_t)w);
            const int len = 3 + (int)(next_u64() % 20);
            const int dy = (int)(next_u64() % 3) - 1;
            const int dx = (int)(next_u64() % 3) - 1;
            for (k = 0; k < len; ++k) {
                if (py >= 0 && py < h && px >= 0 && px < w) {
                    input[(py * w + px) * c] = (int8_t)(127 - (int)(next_u64() % 64));
                }
                py += dy;
                px += dx;
            }
        }
        break;
    }
    case 3: /* one value everywhere */
        memset(input, (int)(int8_t)(next_u64() & 0xFF), LENET_INPUT_SIZE);
        break;
    case 4: /* only the two extremes */
        for (k = 0; k < LENET_INPUT_SIZE; ++k) {
            input[k] = (next_u64() & 1u) ? 127 : -128;
        }
        break;
    case 5: { /* a gradient, clamped */
        const long a = (long)(next_u64() % 33) - 16;
        const long b = (long)(next_u64() % 33) - 16;
        const long o = (long)(next_u64() % 256) - 128;
        for (y = 0; y < h; ++y) {
            for (x = 0; x < w; ++x) {
                for (k = 0; k < c; ++k) {
                    input[(y * w + x) * c + k] = clamp8(o + a * y + b * x);
                }
            }
        }
        break;
    }
    case 6: { /* uniform with a fraction of pixels forced to the extremes */
        const uint64_t share = next_u64() % 100;
        for (k = 0; k < LENET_INPUT_SIZE; ++k) {
            const uint64_t r = next_u64();
            input[k] = (r % 100 < share) ? ((r >> 32) & 1u ? 127 : -128) : (int8_t)((r >> 8) & 0xFF);
        }
        break;
    }
    default: { /* checkers and stripes of random period and phase */
        const int py = 1 + (int)(next_u64() % 8);
        const int px = 1 + (int)(next_u64() % 8);
        const int mode = (int)(next_u64() % 3);
        const int8_t lo = (int8_t)(next_u64() & 0xFF);
        const int8_t hi = (int8_t)(next_u64() & 0xFF);
        for (y = 0; y < h; ++y) {
            for (x = 0; x < w; ++x) {
                const int on = mode == 0 ? ((y / py + x / px) & 1) : mode == 1 ? ((y / py) & 1)
                                                                                : ((x / px) & 1);
                for (k = 0; k < c; ++k) {
                    input[(y * w + x) * c + k] = on ? hi : lo;
                }
            }
        }
        break;
    }
    }
}

static int argmax(const int8_t *v)
{
    int best = 0;
    int k;
    for (k = 1; k < LENET_OUTPUT_SIZE; ++k) {
        if (v[k] > v[best]) {
            best = k;
        }
    }
    return best;
}

/* Run the current input, with the checks described at the top; 0 on success. */
static int check_one(long i)
{
    lenet_status_t st;
    memcpy(input_copy, input, LENET_INPUT_SIZE);
    memset(scratch, 0xA5, LENET_SCRATCH_SIZE);
    st = lenet_infer(input, output, scratch);
    if (st != LENET_OK) {
        fprintf(stderr, "case %ld: lenet_infer returned %d\n", i, (int)st);
        return 1;
    }
    if (memcmp(input, input_copy, LENET_INPUT_SIZE) != 0) {
        fprintf(stderr, "case %ld: lenet_infer modified its input\n", i);
        return 1;
    }
    if (i % 4 == 0) {
        const int cls = lenet_predict(input, scratch);
        if (cls != argmax(output)) {
            fprintf(stderr, "case %ld: lenet_predict %d != argmax %d\n", i, cls, argmax(output));
            return 1;
        }
    }
    if (i % 16 == 0) {
        size_t k;
        unsigned char *s = (unsigned char *)scratch;
        for (k = 0; k < LENET_SCRATCH_SIZE; ++k) {
            s[k] = (unsigned char)(next_u64() & 0xFF);
        }
        st = lenet_infer(input, output2, scratch);
        if (st != LENET_OK || memcmp(output, output2, LENET_OUTPUT_SIZE) != 0) {
            fprintf(stderr, "case %ld: the scores depend on the prior scratch contents\n", i);
            return 1;
        }
    }
    return 0;
}

#define API_CHECK(cond)                                                            \
    do {                                                                           \
        ++checks;                                                                  \
        if (!(cond)) {                                                             \
            fprintf(stderr, "api check failed: %s (line %d)\n", #cond, __LINE__);  \
            return 1;                                                              \
        }                                                                          \
    } while (0)

static int api(void)
{
    int checks = 0;
    int mask;
    size_t off;
    unsigned char *raw = (unsigned char *)malloc(LENET_SCRATCH_SIZE + LENET_SCRATCH_ALIGN);
    int8_t sentinel[LENET_OUTPUT_SIZE];
    if (raw == NULL) {
        return 1;
    }
    memset(input, 0, LENET_INPUT_SIZE);
    memset(output, 0x5A, LENET_OUTPUT_SIZE);
    memcpy(sentinel, output, LENET_OUTPUT_SIZE);
    /* Every combination of NULL among the three pointers of lenet_infer. */
    for (mask = 1; mask < 8; ++mask) {
        const int8_t *in = (mask & 1) ? NULL : input;
        int8_t *out = (mask & 2) ? NULL : output;
        void *scr = (mask & 4) ? NULL : scratch;
        API_CHECK(lenet_infer(in, out, scr) == LENET_ERROR_NULL_POINTER);
    }
    API_CHECK(lenet_predict(NULL, scratch) == (int)LENET_ERROR_NULL_POINTER);
    API_CHECK(lenet_predict(input, NULL) == (int)LENET_ERROR_NULL_POINTER);
    API_CHECK(lenet_predict(NULL, NULL) == (int)LENET_ERROR_NULL_POINTER);
    /* Misaligned scratch: every offset that breaks the documented alignment. */
    for (off = 0; off < LENET_SCRATCH_ALIGN; ++off) {
        unsigned char *base = raw + (LENET_SCRATCH_ALIGN - ((uintptr_t)raw % LENET_SCRATCH_ALIGN));
        void *scr = base - off; /* base is aligned; base - off is not for off > 0 */
        if (off == 0 || (unsigned char *)scr < raw) {
            continue;
        }
        API_CHECK(lenet_infer(input, output, scr) == LENET_ERROR_MISALIGNED_SCRATCH);
        API_CHECK(lenet_predict(input, scr) == (int)LENET_ERROR_MISALIGNED_SCRATCH);
        API_CHECK(lenet_predict(input, scr) < 0);
    }
    API_CHECK(memcmp(output, sentinel, LENET_OUTPUT_SIZE) == 0);
#ifdef LENET_MNIST_PIXELS
    {
        uint8_t *pixels = (uint8_t *)calloc(LENET_MNIST_PIXELS, 1);
        if (pixels == NULL) {
            return 1;
        }
        memset(input, 7, LENET_INPUT_SIZE);
        lenet_quantize_mnist(NULL, input);
        lenet_quantize_mnist(pixels, NULL);
        lenet_quantize_mnist(NULL, NULL);
        API_CHECK(input[0] == 7 && input[LENET_INPUT_SIZE - 1] == 7);
        lenet_quantize_mnist(pixels, input);
        API_CHECK(input[0] == (int8_t)LENET_INPUT_ZERO_POINT);
        free(pixels);
    }
#endif
    /* And the happy path still works afterwards. */
    API_CHECK(lenet_infer(input, output, scratch) == LENET_OK);
    API_CHECK(lenet_predict(input, scratch) == argmax(output));
    free(raw);
    printf("api ok: %d checks\n", checks);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 0;
    int rc = 0;
    input = (int8_t *)malloc(LENET_INPUT_SIZE);
    input_copy = (int8_t *)malloc(LENET_INPUT_SIZE);
    output = (int8_t *)malloc(LENET_OUTPUT_SIZE);
    output2 = (int8_t *)malloc(LENET_OUTPUT_SIZE);
    scratch = malloc(LENET_SCRATCH_SIZE); /* malloc aligns to at least 8 */
    if (!input || !input_copy || !output || !output2 || !scratch) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (argc == 2 && strcmp(argv[1], "api") == 0) {
        rc = api();
    } else if (argc == 4 && strcmp(argv[1], "files") == 0) {
        FILE *in = fopen(argv[2], "rb");
        FILE *out = fopen(argv[3], "wb");
        if (in == NULL || out == NULL) {
            fprintf(stderr, "cannot open files\n");
            return 1;
        }
        rng_state = 1;
        while (rc == 0 && fread(input, 1, LENET_INPUT_SIZE, in) == LENET_INPUT_SIZE) {
            rc = check_one(n);
            if (rc == 0 && fwrite(output, 1, LENET_OUTPUT_SIZE, out) != LENET_OUTPUT_SIZE) {
                rc = 1;
            }
            ++n;
        }
        fclose(in);
        if (fclose(out) != 0) {
            rc = 1;
        }
        if (rc == 0) {
            printf("files ok: %ld inputs\n", n);
        }
    } else if (argc == 7 && strcmp(argv[1], "random") == 0) {
        const uint64_t seed = strtoull(argv[2], NULL, 10);
        const long count = strtol(argv[3], NULL, 10);
        const long every = strtol(argv[5], NULL, 10);
        FILE *out = fopen(argv[4], "wb");
        FILE *sample = fopen(argv[6], "wb");
        if (out == NULL || sample == NULL || every < 1) {
            fprintf(stderr, "cannot open files\n");
            return 1;
        }
        for (n = 0; rc == 0 && n < count; ++n) {
            generate(seed, n);
            if (n % every == 0 && fwrite(input, 1, LENET_INPUT_SIZE, sample) != LENET_INPUT_SIZE) {
                rc = 1;
            }
            if (rc == 0) {
                rc = check_one(n);
            }
            if (rc == 0 && fwrite(output, 1, LENET_OUTPUT_SIZE, out) != LENET_OUTPUT_SIZE) {
                rc = 1;
            }
        }
        if (fclose(out) != 0 || fclose(sample) != 0) {
            rc = 1;
        }
        if (rc == 0) {
            printf("random ok: %ld inputs\n", n);
        }
    } else {
        fprintf(stderr, "usage: fuzz_engine files IN OUT | random SEED N OUT EVERY SAMPLE | api\n");
        return 2;
    }
    free(input);
    free(input_copy);
    free(output);
    free(output2);
    free(scratch);
    return rc;
}
