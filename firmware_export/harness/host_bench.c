/*
 * lenet-edge engine_bench: time <prefix>_infer over every input, inside C
 * (compiled by lenet_edge/engine_bench.py, never linked into an application).
 *
 * usage: host_bench INPUTS OUTPUTS PASSES CHUNK
 *   INPUTS   raw int8 file of N * <PREFIX>_INPUT_SIZE bytes (N engine inputs, back to back)
 *   OUTPUTS  written: the N * <PREFIX>_OUTPUT_SIZE int8 outputs of the last pass
 * Makes PASSES timed passes (after one warm-up pass), timing each CHUNK of consecutive inputs
 * with CLOCK_MONOTONIC, and prints "N chunked best median": N, then nanoseconds per input for
 * the sum of each chunk's fastest time, the fastest whole pass and the median pass.
 * The build defines ENGINE_HEADER, ENGINE_INPUT_SIZE, ENGINE_OUTPUT_SIZE, ENGINE_SCRATCH_SIZE
 * and ENGINE_INFER (the engine's <prefix>_infer).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include ENGINE_HEADER

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static union {
    int8_t bytes[ENGINE_SCRATCH_SIZE];
    long long align;
} scratch;

int main(int argc, char **argv)
{
    FILE *f;
    long size;
    size_t n, i, c, chunks;
    int8_t *in, *out;
    int pass, passes;
    double *times, *chunk_best, sum_best = 0.0;
    if (argc != 5) {
        fprintf(stderr, "usage: %s inputs.bin outputs.bin passes chunk\n", argv[0]);
        return 2;
    }
    passes = atoi(argv[3]);
    c = (size_t)atol(argv[4]);
    f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0 || c < 1) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    rewind(f);
    n = (size_t)size / ENGINE_INPUT_SIZE;
    chunks = (n + c - 1) / c;
    in = (int8_t *)malloc(n * ENGINE_INPUT_SIZE);
    out = (int8_t *)malloc(n * ENGINE_OUTPUT_SIZE);
    times = (double *)malloc((size_t)passes * sizeof(double));
    chunk_best = (double *)malloc(chunks * sizeof(double));
    if (in == NULL || out == NULL || times == NULL || chunk_best == NULL || passes < 1 ||
        fread(in, ENGINE_INPUT_SIZE, n, f) != n) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    for (i = 0; i < chunks; ++i) {
        chunk_best[i] = 1e300;
    }
    for (pass = -1; pass < passes; ++pass) { /* pass -1 warms the caches */
        const double t_pass = now_ns();
        size_t k;
        for (k = 0; k < chunks; ++k) {
            const size_t end = (k + 1) * c < n ? (k + 1) * c : n;
            const double t0 = now_ns();
            for (i = k * c; i < end; ++i) {
                if (ENGINE_INFER(in + i * ENGINE_INPUT_SIZE, out + i * ENGINE_OUTPUT_SIZE,
                                 scratch.bytes) != 0) {
                    fprintf(stderr, "infer failed on input %lu\n", (unsigned long)i);
                    return 1;
                }
            }
            {
                const double dt = now_ns() - t0;
                if (pass >= 0 && dt < chunk_best[k]) {
                    chunk_best[k] = dt;
                }
            }
        }
        if (pass >= 0) {
            times[pass] = (now_ns() - t_pass) / (double)n;
        }
    }
    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(out, ENGINE_OUTPUT_SIZE, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    for (i = 0; i < chunks; ++i) {
        sum_best += chunk_best[i];
    }
    qsort(times, (size_t)passes, sizeof(double), compare);
    printf("%lu %.1f %.1f %.1f\n", (unsigned long)n, sum_best / (double)n, times[0],
           times[passes / 2]);
    return 0;
}
