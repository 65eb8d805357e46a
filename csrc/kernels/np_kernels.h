/*
 * np_kernels.h -- native task kernels: plain C11, no Python.h.
 *
 * A kernel is a function that runs one call described by an np_kcall: its
 * arguments were converted to C values by the binding (with the GIL held,
 * at submit time), the kernel runs on a pool worker with no GIL at all, and
 * it reports through the same record: a status, an errno or library code, a
 * message, and a result (a scalar, a small digest, or a malloc'd buffer).
 * The binding turns that outcome into a Python object or exception only when
 * someone reads it (python-zstandard's rule: native workers never call
 * Python; they report through an error enum).
 *
 * Rules for every kernel:
 *   - never call into Python, never block forever on anything but the work;
 *   - read only its own arguments; buffers are pinned by the binding for the
 *     whole call and may be large (sizes are size_t, chunk for libraries
 *     whose lengths are 32-bit);
 *   - on failure set status/code/msg with np_kfail*(); leave `out` NULL
 *     (free anything half-built);
 *   - be restartable when it returns NP_K_EINTR (only when `interruptible`
 *     is set: a direct call in the main thread, so Ctrl-C can interrupt it).
 */
#ifndef NP_KERNELS_H
#define NP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define NP_KMAX_ARGS 16

/* A pinned buffer argument. */
typedef struct np_kbuf {
    void *ptr;
    size_t len;
} np_kbuf;

/* One argument.  The binding writes the member of the declared C type, so a
 * kernel (or libffi) can take its address as a pointer to that type. */
typedef union np_kval {
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    np_kbuf buf;          /* buf.ptr doubles as a plain pointer argument */
} np_kval;

/* C types of user functions' arguments and results (np_ffi). */
enum np_ktype {
    NP_T_VOID = 0,        /* result only */
    NP_T_I8, NP_T_I16, NP_T_I32, NP_T_I64,
    NP_T_U8, NP_T_U16, NP_T_U32, NP_T_U64,
    NP_T_F32, NP_T_F64,
    NP_T_PTR,             /* argument only: a pointer into a pinned buffer */
    NP_T_COUNT
};

/* Outcome kinds; the binding maps each to a Python exception. */
enum np_kstatus {
    NP_K_OK = 0,
    NP_K_ERRNO,           /* OSError from errno `code` (msg: unused) */
    NP_K_NOMEM,           /* MemoryError */
    NP_K_ZLIB,            /* zlib.error(msg), code = zlib's return code */
    NP_K_VALUE,           /* ValueError(msg) */
    NP_K_OVERFLOW,        /* OverflowError(msg) */
    NP_K_EINTR,           /* interrupted by a signal (interruptible calls
                             only): run the handlers, then call again */
};

typedef struct np_kcall {
    np_kval arg[NP_KMAX_ARGS];     /* arguments, by position */
    const void *ctx;               /* kernel-specific (np_ffi_fn for np_k_ffi) */
    int interruptible;             /* see NP_K_EINTR */

    /* outcome, written by the kernel */
    int status;                    /* enum np_kstatus */
    int code;                      /* errno or library code */
    char msg[160];                 /* NUL-terminated; may be empty */
    union {
        int64_t i64;
        uint64_t u64;
        double f64;
        struct { uint64_t lo, hi; } u128;
    } ret;
    unsigned char *out;            /* malloc'd bytes result, or NULL; whoever
                                      frees the call frees it with free() */
    size_t out_len;
    unsigned char digest[64];      /* small fixed-size results (hashes) */
    size_t digest_len;
} np_kcall;

typedef void (*np_kernel_fn)(np_kcall *c);

/* Set the outcome to an error: a printf-style message, or errno. */
void np_kfail(np_kcall *c, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void np_kfail_errno(np_kcall *c, int err);

/* ---- built-in kernels -----------------------------------------------------
 * Each line: arguments -> result.  The binding checks ranges before the call
 * (a kernel re-checks only what would be undefined behaviour). */

/* arg0.f64 seconds (finite, >= 0), arg1.i64 deadline (0: not yet started;
 * the kernel sets it on its first run, so a restart after NP_K_EINTR keeps
 * the original end) -> nothing.  CLOCK_MONOTONIC, absolute sleeps. */
void np_k_sleep(np_kcall *c);

/* arg0.i64 n -> ret.u128 = sum(i*i for i in range(n)), exact (0 for n <= 0).
 * A real loop the compiler cannot fold into a closed formula.  n above
 * NP_SUM_SQUARES_MAX (the sum would not fit 128 bits) is NP_K_OVERFLOW. */
void np_k_sum_squares(np_kcall *c);
extern const int64_t NP_SUM_SQUARES_MAX;

/* arg0.buf data, arg1.u32 start value -> ret.u64 (as zlib.crc32/adler32). */
void np_k_crc32(np_kcall *c);
void np_k_adler32(np_kcall *c);

/* arg0.buf data, arg1.i32 level, arg2.i32 wbits -> out (zlib.compress,
 * byte for byte, errors with zlib.compress's messages). */
void np_k_compress(np_kcall *c);

/* arg0.buf data, arg1.i32 wbits, arg2.i64 bufsize (>= 1: initial output
 * size) -> out (zlib.decompress, same errors and messages). */
void np_k_decompress(np_kcall *c);

/* arg0.buf path (NUL-terminated) -> out: the whole file, as
 * open(path, 'rb').read(); NP_K_ERRNO on failure. */
void np_k_read_file(np_kcall *c);

/* arg0.buf path (NUL-terminated), arg1.buf destination (writable), arg2.i64
 * offset (>= 0) -> ret.i64: bytes read into the destination from that file
 * offset, stopping at end of file or when it is full. */
void np_k_read_into(np_kcall *c);

/* arg0.buf data -> digest (32 bytes), as hashlib.sha256(data).digest(). */
void np_k_sha256(np_kcall *c);

#endif /* NP_KERNELS_H */
