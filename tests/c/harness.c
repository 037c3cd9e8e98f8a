/*
 * Test harness for the generated standalone engine (compiled by the tests, never shipped).
 *
 * usage: harness INPUTS OUTPUTS [TRACE]
 *   INPUTS  raw int8 file of N * <PREFIX>_INPUT_SIZE bytes (N images, back to back)
 *   OUTPUTS written: N * <PREFIX>_OUTPUT_SIZE int8 scores
 *   TRACE   written when given (build with -D<PREFIX>_TRACE): every layer's output, per image
 * Prints "<scratch size> <N>" and exits 0, or prints an error and exits 1.
 * The tests define ENGINE_HEADER, ENGINE_INPUT_SIZE, ENGINE_OUTPUT_SIZE, ENGINE_SCRATCH_SIZE,
 * ENGINE_INFER and, for tracing, ENGINE_TRACE_FN (the engine's <prefix>_trace).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include ENGINE_HEADER

static FILE *trace_file = NULL;

#ifdef ENGINE_TRACE_FN
void ENGINE_TRACE_FN(int32_t step, const int8_t *data, int32_t size)
{
    (void)step;
    if (trace_file != NULL && fwrite(data, 1, (size_t)size, trace_file) != (size_t)size) {
        fprintf(stderr, "trace write failed\n");
        exit(1);
    }
}
#endif

int main(int argc, char **argv)
{
    FILE *in;
    FILE *out;
    static int8_t input[ENGINE_INPUT_SIZE];
    static int8_t output[ENGINE_OUTPUT_SIZE];
    /* Scratch exactly as large as the header says, so ASan catches any overrun. */
    void *scratch = malloc(ENGINE_SCRATCH_SIZE);
    long n = 0;
    if ((argc != 3 && argc != 4) || scratch == NULL) {
        fprintf(stderr, "usage: harness INPUTS OUTPUTS [TRACE]\n");
        return 1;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (argc == 4) {
        trace_file = fopen(argv[3], "wb");
    }
    if (in == NULL || out == NULL || (argc == 4 && trace_file == NULL)) {
        fprintf(stderr, "cannot open files\n");
        return 1;
    }
    while (fread(input, 1, sizeof input, in) == sizeof input) {
        int status = (int)ENGINE_INFER(input, output, scratch);
        if (status != 0) {
            fprintf(stderr, "infer failed with status %d on image %ld\n", status, n);
            return 1;
        }
        if (fwrite(output, 1, sizeof output, out) != sizeof output) {
            fprintf(stderr, "write failed\n");
            return 1;
        }
        ++n;
    }
    fclose(in);
    fclose(out);
    if (trace_file != NULL) {
        fclose(trace_file);
    }
    free(scratch);
    printf("%d %ld\n", (int)ENGINE_SCRATCH_SIZE, n);
    return 0;
}
