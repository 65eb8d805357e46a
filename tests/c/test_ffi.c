/* test_ffi.c -- unit tests for csrc/kernels/np_ffi.{h,c}: describing C
 * functions with np_ffi_prepare and calling them with np_k_ffi, for every
 * argument and result type.
 *
 * The called functions are defined here; a few on x86-64 are written in
 * assembly so that a narrow result comes back with garbage in the upper
 * bits of the register (the ABI allows it), which np_k_ffi must ignore. */
#include "test.h"

#include <math.h>
#include <pthread.h>

#include "np_ffi.h"

typedef void (*vfn)(void);
#define FN(f) ((vfn)(f))

/* ---- helpers --------------------------------------------------------------- */

static np_ffi_fn *
prep(vfn fn, int rtype, int nargs, const uint8_t *types)
{
    /* The cif points into the np_ffi_fn: it must not move (static here). */
    static np_ffi_fn slots[32];
    static int next;
    np_ffi_fn *f = &slots[next++ % 32];
    return np_ffi_prepare(f, fn, rtype, nargs, types) == 0 ? f : NULL;
}

/* A call record whose argument slots are full of garbage bytes: the binding
 * writes only the member of the declared type. */
static void
call_init(np_kcall *c, const np_ffi_fn *f)
{
    memset(c, 0xa5, sizeof *c);
    c->ctx = f;
    c->interruptible = 0;
    c->out = NULL;
    c->out_len = 0;
    c->status = -1;
    c->msg[0] = 'x';
    c->msg[1] = '\0';
}

static void
run(np_kcall *c)
{
    np_k_ffi(c);
}

/* ---- functions to call ----------------------------------------------------- */

static int8_t f_i8(int8_t a, int8_t b) { return (int8_t)(a + b); }
static uint8_t f_u8(uint8_t a) { return (uint8_t)(a | 0xf0); }
static int16_t f_i16(int16_t a) { return (int16_t)(a - 2000); }
static uint16_t f_u16(uint16_t a, uint16_t b) { return (uint16_t)(a * b); }
static int32_t f_i32(int32_t a, int32_t b) { return a * b; }
static uint32_t f_u32(uint32_t a) { return ~a; }
static int64_t f_i64(int64_t a) { return a + 1; }
static uint64_t f_u64(uint64_t a, uint64_t b) { return a - b; }
static float f_f32(float a, float b) { return a * b; }
static double f_f64(double a) { return sqrt(a); }
static int32_t f_noargs(void) { return 4242; }

static double
f_mixed(int32_t a, double b, int8_t c, float d, uint64_t e, int16_t f,
        uint8_t g, double h)
{
    return (double)a + b + (double)c + (double)d + (double)e + (double)f +
           (double)g + h;
}

/* 16 integers: more than the 6 integer registers, the rest on the stack.
 * Weighted so that any swapped or dropped argument shows. */
static int64_t
f_sum16(int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4,
        int64_t a5, int64_t a6, int64_t a7, int64_t a8, int64_t a9,
        int64_t a10, int64_t a11, int64_t a12, int64_t a13, int64_t a14,
        int64_t a15)
{
    return a0 * 1 + a1 * 2 + a2 * 3 + a3 * 4 + a4 * 5 + a5 * 6 + a6 * 7 +
           a7 * 8 + a8 * 9 + a9 * 10 + a10 * 11 + a11 * 12 + a12 * 13 +
           a13 * 14 + a14 * 15 + a15 * 16;
}

/* 16 arguments of every type, alternating integer and floating point, so
 * both register files overflow onto the stack. */
static double
f_all16(int8_t a, double b, uint8_t c, float d, int16_t e, double f,
        uint16_t g, float h, int32_t i, double j, uint32_t k, float l,
        int64_t m, double n, uint64_t o, const int32_t *p)
{
    return (double)a * 1 + b * 2 + (double)c * 3 + (double)d * 4 +
           (double)e * 5 + f * 6 + (double)g * 7 + (double)h * 8 +
           (double)i * 9 + j * 10 + (double)k * 11 + (double)l * 12 +
           (double)m * 13 + n * 14 + (double)o * 15 + (double)*p * 16;
}

static _Atomic int64_t void_seen;

static void
f_void(int64_t v)
{
    atomic_store(&void_seen, v);
}

/* Pointer arguments: fill dst[0..n) with src[i] + add. */
static void
f_fill(uint8_t *dst, const uint8_t *src, uint64_t n, uint8_t add)
{
    for (uint64_t i = 0; i < n; i++) {
        dst[i] = (uint8_t)(src[i] + add);
    }
}

static int32_t
f_is_null(const void *p)
{
    return p == NULL;
}

#if defined(__x86_64__) && defined(__linux__)
/* Narrow results with dirty upper bits: %rax = 0xdeadbeefcafe00ff etc. */
__asm__(".text\n"
        ".globl np_test_dirty_ff\n"
        ".type np_test_dirty_ff, @function\n"
        "np_test_dirty_ff:\n"
        "    movabsq $0xdeadbeefcafe80ff, %rax\n"
        "    ret\n"
        ".size np_test_dirty_ff, .-np_test_dirty_ff\n"
        ".globl np_test_dirty_8000\n"
        ".type np_test_dirty_8000, @function\n"
        "np_test_dirty_8000:\n"
        "    movabsq $0x1234567800018000, %rax\n"
        "    ret\n"
        ".size np_test_dirty_8000, .-np_test_dirty_8000\n"
        ".globl np_test_dirty_80000000\n"
        ".type np_test_dirty_80000000, @function\n"
        "np_test_dirty_80000000:\n"
        "    movabsq $0x0000000180000000, %rax\n"
        "    ret\n"
        ".size np_test_dirty_80000000, .-np_test_dirty_80000000\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
void np_test_dirty_ff(void);
void np_test_dirty_8000(void);
void np_test_dirty_80000000(void);
#define HAVE_DIRTY 1
#else
#define HAVE_DIRTY 0
#endif

/* ---- tests ----------------------------------------------------------------- */

TEST(integer_results_every_width)
{
    np_kcall c;
    np_ffi_fn *f;

    f = prep(FN(f_i8), NP_T_I8, 2, (const uint8_t[]){NP_T_I8, NP_T_I8});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].i8 = -100;
    c.arg[1].i8 = -20;
    run(&c);
    ASSERT_EQ(c.status, NP_K_OK);
    ASSERT_EQ(c.msg[0], '\0');
    ASSERT_EQ(c.ret.i64, -120);
    call_init(&c, f);
    c.arg[0].i8 = 100;
    c.arg[1].i8 = 27;
    run(&c);
    ASSERT_EQ(c.ret.i64, 127);

    f = prep(FN(f_u8), NP_T_U8, 1, (const uint8_t[]){NP_T_U8});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].u8 = 0x0f;
    run(&c);
    ASSERT_UEQ(c.ret.u64, 255);

    f = prep(FN(f_i16), NP_T_I16, 1, (const uint8_t[]){NP_T_I16});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].i16 = -30000;
    run(&c);
    ASSERT_EQ(c.ret.i64, -32000);

    f = prep(FN(f_u16), NP_T_U16, 2, (const uint8_t[]){NP_T_U16, NP_T_U16});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].u16 = 65535;
    c.arg[1].u16 = 1;
    run(&c);
    ASSERT_UEQ(c.ret.u64, 65535);

    f = prep(FN(f_i32), NP_T_I32, 2, (const uint8_t[]){NP_T_I32, NP_T_I32});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].i32 = -46341;
    c.arg[1].i32 = 46340;
    run(&c);
    ASSERT_EQ(c.ret.i64, (int64_t)-46341 * 46340);

    f = prep(FN(f_u32), NP_T_U32, 1, (const uint8_t[]){NP_T_U32});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].u32 = 0;
    run(&c);
    ASSERT_UEQ(c.ret.u64, 0xffffffffu);

    f = prep(FN(f_i64), NP_T_I64, 1, (const uint8_t[]){NP_T_I64});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].i64 = INT64_MIN;
    run(&c);
    ASSERT_EQ(c.ret.i64, INT64_MIN + 1);

    f = prep(FN(f_u64), NP_T_U64, 2, (const uint8_t[]){NP_T_U64, NP_T_U64});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].u64 = 0;
    c.arg[1].u64 = 1;
    run(&c);
    ASSERT_UEQ(c.ret.u64, UINT64_MAX);

    f = prep(FN(f_noargs), NP_T_I32, 0, NULL);
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    run(&c);
    ASSERT_EQ(c.ret.i64, 4242);
}

TEST(float_results)
{
    np_kcall c;
    np_ffi_fn *f = prep(FN(f_f32), NP_T_F32, 2,
                        (const uint8_t[]){NP_T_F32, NP_T_F32});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].f32 = 1.5f;
    c.arg[1].f32 = -2.25f;
    run(&c);
    ASSERT_EQ(c.status, NP_K_OK);
    ASSERT_TRUE(c.ret.f64 == -3.375);
    /* a float result is widened exactly */
    call_init(&c, f);
    c.arg[0].f32 = 0.1f;
    c.arg[1].f32 = 1.0f;
    run(&c);
    ASSERT_TRUE(c.ret.f64 == (double)0.1f);

    f = prep(FN(f_f64), NP_T_F64, 1, (const uint8_t[]){NP_T_F64});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].f64 = 2.0;
    run(&c);
    ASSERT_TRUE(c.ret.f64 == sqrt(2.0));
}

TEST(mixed_int_and_double_args)
{
    static const uint8_t t[] = {NP_T_I32, NP_T_F64, NP_T_I8, NP_T_F32,
                                NP_T_U64, NP_T_I16, NP_T_U8, NP_T_F64};
    np_ffi_fn *f = prep(FN(f_mixed), NP_T_F64, 8, t);
    ASSERT_PTR_NE(f, NULL);
    np_kcall c;
    call_init(&c, f);
    c.arg[0].i32 = -7;
    c.arg[1].f64 = 0.5;
    c.arg[2].i8 = -128;
    c.arg[3].f32 = 0.25f;
    c.arg[4].u64 = (uint64_t)1 << 40;
    c.arg[5].i16 = -300;
    c.arg[6].u8 = 200;
    c.arg[7].f64 = 1e-3;
    run(&c);
    double want = -7 + 0.5 - 128 + 0.25 + (double)((uint64_t)1 << 40) - 300 +
                  200 + 1e-3;
    ASSERT_TRUE(c.ret.f64 == want);
}

TEST(sixteen_args)
{
    uint8_t t[16];
    for (int i = 0; i < 16; i++) {
        t[i] = NP_T_I64;
    }
    np_ffi_fn *f = prep(FN(f_sum16), NP_T_I64, 16, t);
    ASSERT_PTR_NE(f, NULL);
    np_kcall c;
    call_init(&c, f);
    int64_t want = 0;
    for (int i = 0; i < 16; i++) {
        c.arg[i].i64 = (int64_t)(i * 1000 + 1) * (i % 2 ? -1 : 1);
        want += c.arg[i].i64 * (i + 1);
    }
    run(&c);
    ASSERT_EQ(c.ret.i64, want);

    static const uint8_t t2[16] = {
        NP_T_I8, NP_T_F64, NP_T_U8, NP_T_F32, NP_T_I16, NP_T_F64,
        NP_T_U16, NP_T_F32, NP_T_I32, NP_T_F64, NP_T_U32, NP_T_F32,
        NP_T_I64, NP_T_F64, NP_T_U64, NP_T_PTR};
    f = prep(FN(f_all16), NP_T_F64, 16, t2);
    ASSERT_PTR_NE(f, NULL);
    static const int32_t pointee = -5;
    call_init(&c, f);
    c.arg[0].i8 = -3;
    c.arg[1].f64 = 0.5;
    c.arg[2].u8 = 250;
    c.arg[3].f32 = 1.25f;
    c.arg[4].i16 = -1000;
    c.arg[5].f64 = 2.5;
    c.arg[6].u16 = 60000;
    c.arg[7].f32 = -0.75f;
    c.arg[8].i32 = -100000;
    c.arg[9].f64 = 3.0;
    c.arg[10].u32 = 4000000000u;
    c.arg[11].f32 = 8.0f;
    c.arg[12].i64 = -(INT64_C(1) << 40);
    c.arg[13].f64 = -4.5;
    c.arg[14].u64 = UINT64_C(1) << 50;
    c.arg[15].buf.ptr = (void *)&pointee;
    run(&c);
    double w = f_all16(-3, 0.5, 250, 1.25f, -1000, 2.5, 60000, -0.75f,
                       -100000, 3.0, 4000000000u, 8.0f, -(INT64_C(1) << 40),
                       -4.5, UINT64_C(1) << 50, &pointee);
    ASSERT_TRUE(c.ret.f64 == w);
}

TEST(void_result_and_pointer_args)
{
    np_ffi_fn *f = prep(FN(f_void), NP_T_VOID, 1, (const uint8_t[]){NP_T_I64});
    ASSERT_PTR_NE(f, NULL);
    np_kcall c;
    call_init(&c, f);
    c.arg[0].i64 = -77;
    run(&c);
    ASSERT_EQ(c.status, NP_K_OK);
    ASSERT_EQ(atomic_load(&void_seen), -77);
    ASSERT_UEQ(c.ret.u64, 0);

    static const uint8_t t[] = {NP_T_PTR, NP_T_PTR, NP_T_U64, NP_T_U8};
    f = prep(FN(f_fill), NP_T_VOID, 4, t);
    ASSERT_PTR_NE(f, NULL);
    uint8_t src[300], dst[300];
    for (int i = 0; i < 300; i++) {
        src[i] = (uint8_t)i;
        dst[i] = 0;
    }
    call_init(&c, f);
    c.arg[0].buf.ptr = dst;
    c.arg[0].buf.len = sizeof dst;
    c.arg[1].buf.ptr = src;
    c.arg[1].buf.len = sizeof src;
    c.arg[2].u64 = 299;
    c.arg[3].u8 = 3;
    run(&c);
    for (int i = 0; i < 299; i++) {
        ASSERT_EQ(dst[i], (uint8_t)(i + 3));
    }
    ASSERT_EQ(dst[299], 0);

    f = prep(FN(f_is_null), NP_T_I32, 1, (const uint8_t[]){NP_T_PTR});
    ASSERT_PTR_NE(f, NULL);
    call_init(&c, f);
    c.arg[0].buf.ptr = NULL;
    c.arg[0].buf.len = 0;
    run(&c);
    ASSERT_EQ(c.ret.i64, 1);
    call_init(&c, f);
    c.arg[0].buf.ptr = src;
    run(&c);
    ASSERT_EQ(c.ret.i64, 0);
}

/* The same bytes in %rax read as every narrow type: only the low bits count,
 * sign- or zero-extended by the declared type. */
TEST(narrow_results_ignore_upper_register_bits)
{
    if (!HAVE_DIRTY) {
        TEST_LOG("x86-64 only");
        return;
    }
#if HAVE_DIRTY
    static const struct {
        vfn fn; int rtype; int64_t want_i; uint64_t want_u; int is_signed;
    } v[] = {
        {np_test_dirty_ff, NP_T_U8, 0, 255, 0},
        {np_test_dirty_ff, NP_T_I8, -1, 0, 1},
        {np_test_dirty_ff, NP_T_U16, 0, 0x80ff, 0},
        {np_test_dirty_ff, NP_T_I16, (int16_t)0x80ff, 0, 1},
        {np_test_dirty_8000, NP_T_I16, -32768, 0, 1},
        {np_test_dirty_8000, NP_T_U16, 0, 0x8000, 0},
        {np_test_dirty_8000, NP_T_U32, 0, 0x18000, 0},
        {np_test_dirty_80000000, NP_T_I32, INT32_MIN, 0, 1},
        {np_test_dirty_80000000, NP_T_U32, 0, 0x80000000u, 0},
        {np_test_dirty_80000000, NP_T_I64, INT64_C(0x180000000), 0, 1},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        np_ffi_fn *f = prep(v[i].fn, v[i].rtype, 0, NULL);
        ASSERT_PTR_NE(f, NULL);
        np_kcall c;
        call_init(&c, f);
        run(&c);
        if (v[i].is_signed) {
            EXPECT_EQ(c.ret.i64, v[i].want_i);
        }
        else {
            EXPECT_UEQ(c.ret.u64, v[i].want_u);
        }
    }
#endif
}

TEST(prepare_rejections)
{
    static np_ffi_fn f;
    uint8_t ok[NP_KMAX_ARGS + 1];
    for (int i = 0; i <= NP_KMAX_ARGS; i++) {
        ok[i] = NP_T_I32;
    }
    /* valid corner cases */
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_noargs), NP_T_I32, 0, NULL), 0);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_sum16), NP_T_VOID, NP_KMAX_ARGS, ok), 0);
    ASSERT_EQ(f.nargs, NP_KMAX_ARGS);
    ASSERT_EQ(f.rtype, NP_T_VOID);
    ASSERT_EQ(f.argtype[15], NP_T_I32);
    ASSERT_PTR_EQ(f.atypes[0], &ffi_type_sint32);
    /* bad function, counts, result types */
    ASSERT_EQ(np_ffi_prepare(&f, NULL, NP_T_I32, 0, NULL), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, -1, ok), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, NP_KMAX_ARGS + 1, ok),
              -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, 2, NULL), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_PTR, 0, NULL), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_COUNT, 0, NULL), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), -1, 0, NULL), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), 200, 0, NULL), -1);
    /* bad argument types: VOID, out of range */
    const uint8_t bad_void[] = {NP_T_I32, NP_T_VOID};
    const uint8_t bad_range[] = {NP_T_COUNT};
    const uint8_t bad_big[] = {NP_T_I8, 255};
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, 2, bad_void), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, 1, bad_range), -1);
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_I32, 2, bad_big), -1);
    /* a rejected description leaves no usable function behind */
    ASSERT_PTR_EQ(f.fn, NULL);
    /* every valid type, as argument and (but PTR) as result */
    for (int t = NP_T_I8; t < NP_T_COUNT; t++) {
        const uint8_t one[] = {(uint8_t)t};
        ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), NP_T_VOID, 1, one), 0);
        if (t != NP_T_PTR) {
            ASSERT_EQ(np_ffi_prepare(&f, FN(f_i32), t, 0, NULL), 0);
        }
    }
}

/* One prepared function called from several threads at once. */
#define NTHREADS 4

typedef struct {
    const np_ffi_fn *f;
    int id;
    _Atomic int bad;
    pthread_t th;
} caller;

static void *
caller_main(void *arg)
{
    caller *w = arg;
    long n = test_scaled(20000, 500);
    for (long i = 0; i < n; i++) {
        np_kcall c;
        memset(&c, 0, sizeof c);
        c.ctx = w->f;
        for (int k = 0; k < 8; k++) {
            c.arg[k].i64 = i + k + w->id;
        }
        c.arg[1].f64 = (double)i * 0.5;
        c.arg[2].i8 = (int8_t)(i & 0x7f);
        c.arg[3].f32 = 0.25f;
        c.arg[4].u64 = (uint64_t)w->id;
        c.arg[5].i16 = -3;
        c.arg[6].u8 = 9;
        c.arg[7].f64 = 1.0;
        np_k_ffi(&c);
        double want = f_mixed(c.arg[0].i32, c.arg[1].f64, c.arg[2].i8,
                              c.arg[3].f32, c.arg[4].u64, c.arg[5].i16,
                              c.arg[6].u8, c.arg[7].f64);
        if (c.status != NP_K_OK || c.ret.f64 != want) {
            atomic_fetch_add(&w->bad, 1);
        }
    }
    return NULL;
}

TEST(concurrent_calls_share_one_description)
{
    static const uint8_t t[] = {NP_T_I32, NP_T_F64, NP_T_I8, NP_T_F32,
                                NP_T_U64, NP_T_I16, NP_T_U8, NP_T_F64};
    static np_ffi_fn f;
    ASSERT_EQ(np_ffi_prepare(&f, FN(f_mixed), NP_T_F64, 8, t), 0);
    static caller w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i].f = &f;
        w[i].id = i;
        atomic_store(&w[i].bad, 0);
        ASSERT_EQ(pthread_create(&w[i].th, NULL, caller_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].th, NULL);
        EXPECT_EQ(atomic_load(&w[i].bad), 0);
    }
}

static const test_case TESTS[] = {
    TEST_ENTRY(integer_results_every_width),
    TEST_ENTRY(float_results),
    TEST_ENTRY(mixed_int_and_double_args),
    TEST_ENTRY(sixteen_args),
    TEST_ENTRY(void_result_and_pointer_args),
    TEST_ENTRY(narrow_results_ignore_upper_register_bits),
    TEST_ENTRY(prepare_rejections),
    TEST_ENTRY(concurrent_calls_share_one_description),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}
