/*
 * lenet-edge mcu-test harness: runs the exported library on the core and reports one line.
 *
 * Modes, chosen by the semihosting command line (`-semihosting-config arg=...`):
 *   "vectors [limit=K]"  the embedded test vectors (raw 28x28 images + expected int8 outputs,
 *                        mcu_vectors.S): quantize with the library, infer, compare every byte
 *                        here on the core. limit=K runs only the first K (instruction counting).
 *   "stream"             read raw 28x28 images from the host file mcu_in.bin and write the
 *                        outputs to mcu_out.bin (semihosting SYS_OPEN/SYS_READ/SYS_WRITE); the
 *                        host compares them.
 * The stack is painted before each image and scanned after it: the line reports the deepest
 * stack use of the library (quantize + infer) and of the whole program.
 * The empty-looking mcu_mark_* functions delimit the library calls for the instruction trace.
 */
#include <stdint.h>
#include <string.h>

#include "mcu_config.h"
#include "mcu_stack.h"
#include "semihost.h"

#define MCU_PIXELS 784u

extern const uint32_t mcu_vec_count;
extern const uint8_t mcu_vec_images[];
extern const int8_t mcu_vec_expected[];
extern uint32_t __stack_bottom[];
extern uint32_t __stack_top[];
void mcu_stack_paint(void);

static uint8_t scratch[MCU_SCRATCH_SIZE > 0 ? MCU_SCRATCH_SIZE : 1] __attribute__((aligned(8)));
static int8_t input[MCU_INPUT_SIZE] __attribute__((aligned(4)));
static int8_t output[MCU_OUTPUT_SIZE] __attribute__((aligned(4)));
static uint8_t pixels[MCU_PIXELS] __attribute__((aligned(4)));

/* Distinct bodies so that identical-code folding cannot merge the markers. */
volatile uint32_t mcu_phase;
__attribute__((noinline)) void mcu_mark_quantize(void) { mcu_phase = 1u; }
__attribute__((noinline)) void mcu_mark_infer(void) { mcu_phase = 2u; }
__attribute__((noinline)) void mcu_mark_done(void) { mcu_phase = 3u; }

static inline uint32_t stack_pointer(void)
{
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* The lowest stack word written since the last paint (the top of the stack when none). */
static uint32_t stack_lowest_used(void)
{
    const volatile uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == MCU_STACK_PATTERN) {
        p++;
    }
    return (uint32_t)(uintptr_t)p;
}

static char *put_str(char *at, const char *s)
{
    while (*s != '\0') {
        *at++ = *s++;
    }
    return at;
}

static char *put_int(char *at, long v)
{
    char digits[12];
    unsigned long u;
    int n = 0;
    if (v < 0) {
        *at++ = '-';
        u = (unsigned long)(-(v + 1)) + 1u;
    } else {
        u = (unsigned long)v;
    }
    do {
        digits[n++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u != 0u);
    while (n > 0) {
        *at++ = digits[--n];
    }
    return at;
}

static char *put_kv(char *at, const char *key, long v)
{
    *at++ = ' ';
    at = put_str(at, key);
    *at++ = '=';
    return put_int(at, v);
}

static int starts_with(const char *s, const char *prefix)
{
    while (*prefix != '\0') {
        if (*s++ != *prefix++) {
            return 0;
        }
    }
    return 1;
}

/* limit=K anywhere in the command line; -1 when absent. */
static long parse_limit(const char *s)
{
    for (; *s != '\0'; s++) {
        if (starts_with(s, "limit=")) {
            long v = 0;
            s += 6;
            while (*s >= '0' && *s <= '9') {
                v = v * 10 + (*s++ - '0');
            }
            return v;
        }
    }
    return -1;
}

struct run_stats {
    long images;
    long mismatched_images;
    long mismatched_bytes;
    long first_mismatch;
    long status_errors;
    uint32_t lib_stack;  /* deepest stack use of the library calls, bytes below the caller */
    uint32_t all_lowest; /* lowest stack address written by anything */
};

/* Quantize and infer one raw image into `output`, measuring the stack the library uses. */
static void run_one(const uint8_t *raw, struct run_stats *st)
{
    uint32_t low = stack_lowest_used();
    uint32_t sp;
    int status;
    if (low < st->all_lowest) {
        st->all_lowest = low;
    }
    sp = stack_pointer(); /* this frame's SP: what the library calls start from */
    mcu_stack_paint();
    mcu_mark_quantize();
    MCU_QUANTIZE(raw, input);
    mcu_mark_infer();
    status = (int)MCU_INFER(input, output, scratch);
    mcu_mark_done();
    low = stack_lowest_used();
    if (low < sp && sp - low > st->lib_stack) {
        st->lib_stack = sp - low;
    }
    if (status != (int)MCU_STATUS_OK) {
        st->status_errors++;
    }
    st->images++;
}

static int run_vectors(long limit, struct run_stats *st)
{
    uint32_t n = mcu_vec_count;
    uint32_t i, j;
    if (limit >= 0 && (uint32_t)limit < n) {
        n = (uint32_t)limit;
    }
    for (i = 0; i < n; i++) {
        const int8_t *want = &mcu_vec_expected[i * (uint32_t)MCU_OUTPUT_SIZE];
        long bad = 0;
        run_one(&mcu_vec_images[i * MCU_PIXELS], st);
        for (j = 0; j < (uint32_t)MCU_OUTPUT_SIZE; j++) {
            if (output[j] != want[j]) {
                bad++;
            }
        }
        if (bad != 0) {
            if (st->mismatched_images == 0) {
                st->first_mismatch = (long)i;
            }
            st->mismatched_images++;
            st->mismatched_bytes += bad;
        }
    }
    return MCU_EXIT_OK;
}

static int run_stream(struct run_stats *st)
{
    int in = mcu_open("mcu_in.bin", MCU_OPEN_RB);
    int out = mcu_open("mcu_out.bin", MCU_OPEN_WB);
    long len, n, i;
    if (in < 0 || out < 0) {
        mcu_puts("MCU-ERROR cannot open mcu_in.bin or mcu_out.bin\n");
        return MCU_EXIT_HOST_IO;
    }
    len = mcu_flen(in);
    if (len < 0 || len % (long)MCU_PIXELS != 0) {
        mcu_puts("MCU-ERROR mcu_in.bin is not a whole number of 28x28 images\n");
        return MCU_EXIT_HOST_IO;
    }
    n = len / (long)MCU_PIXELS;
    for (i = 0; i < n; i++) {
        if (mcu_read(in, pixels, MCU_PIXELS) != MCU_PIXELS) {
            mcu_puts("MCU-ERROR short read from mcu_in.bin\n");
            return MCU_EXIT_HOST_IO;
        }
        run_one(pixels, st);
        if (mcu_write(out, output, (size_t)MCU_OUTPUT_SIZE) != (size_t)MCU_OUTPUT_SIZE) {
            mcu_puts("MCU-ERROR short write to mcu_out.bin\n");
            return MCU_EXIT_HOST_IO;
        }
    }
    (void)mcu_close(in);
    (void)mcu_close(out);
    return MCU_EXIT_OK;
}

int main(void)
{
    static char line[320];
    struct run_stats st;
    const char *cmd = mcu_cmdline();
    int stream = starts_with(cmd, "stream");
    uint32_t top = (uint32_t)(uintptr_t)__stack_top;
    uint32_t bottom = (uint32_t)(uintptr_t)__stack_bottom;
    int rc;
    char *at;

    memset(&st, 0, sizeof st);
    st.first_mismatch = -1;
    st.all_lowest = top;
    rc = stream ? run_stream(&st) : run_vectors(parse_limit(cmd), &st);
    {
        uint32_t low = stack_lowest_used();
        if (low < st.all_lowest) {
            st.all_lowest = low;
        }
    }

    at = put_str(line, "MCU-RESULT");
    at = put_kv(at, "mode", stream ? 1 : 0);
    at = put_kv(at, "images", st.images);
    at = put_kv(at, "mismatched_images", st.mismatched_images);
    at = put_kv(at, "mismatched_bytes", st.mismatched_bytes);
    at = put_kv(at, "first_mismatch", st.first_mismatch);
    at = put_kv(at, "status_errors", st.status_errors);
    at = put_kv(at, "lib_stack", (long)st.lib_stack);
    at = put_kv(at, "stack_hwm", (long)(top - st.all_lowest));
    at = put_kv(at, "stack_size", (long)(top - bottom));
    at = put_kv(at, "scratch", (long)MCU_SCRATCH_SIZE);
    at = put_str(at, "\n");
    *at = '\0';
    mcu_puts(line);

    if (rc != MCU_EXIT_OK) {
        return rc;
    }
    if (st.all_lowest <= bottom) {
        mcu_puts("MCU-ERROR the stack was used down to its last word (overflow)\n");
        return MCU_EXIT_STACK;
    }
    if (st.status_errors != 0) {
        return MCU_EXIT_STATUS;
    }
    return st.mismatched_images != 0 ? MCU_EXIT_MISMATCH : MCU_EXIT_OK;
}
