/*
 * np_kzlib.c -- the zlib kernels: crc32, adler32, compress, decompress.
 *
 * These mirror CPython's Modules/zlibmodule.c (3.11-3.13: zlib_crc32_impl,
 * zlib_adler32_impl, zlib_compress_impl, zlib_decompress_impl) call for
 * call, so results and error messages are the same:
 *
 *   - input is fed to zlib in pieces of at most UINT_MAX bytes (zlib lengths
 *     are uInt), with Z_NO_FLUSH and then Z_FINISH for the last piece;
 *   - output space is handed to zlib in exactly the pieces CPython's
 *     _BlocksOutputBuffer hands it (32 KiB, 64 KiB, 256 KiB, ... 256 MiB;
 *     for decompress a first block of `bufsize` bytes, given out in windows
 *     of at most UINT32_MAX).  That matters for compress: at level 0,
 *     deflate_stored() sizes its stored blocks by avail_out, so a different
 *     output schedule gives different (valid) bytes.  Here the blocks are
 *     kept back to back in one realloc'd buffer;
 *   - error messages are built as zlib_error() builds them.
 *
 * Plain C11, no Python.h.
 */
#include "np_kernels.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* zutil.h's default, as CPython copies it. */
#if MAX_MEM_LEVEL >= 8
#define DEF_MEM_LEVEL 8
#else
#define DEF_MEM_LEVEL MAX_MEM_LEVEL
#endif

static const char unable_allocate_msg[] = "Unable to allocate output buffer.";

/* A valid address for an empty buffer whose pointer is NULL: zlib treats a
 * NULL buffer specially (crc32(v, NULL, 0) returns 0, not v). */
static const unsigned char empty_input[1];

static void
kreset(np_kcall *c)
{
    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
}

static const unsigned char *
buf_ptr(const np_kbuf *b)
{
    return b->ptr != NULL ? (const unsigned char *)b->ptr : empty_input;
}

/* ---- crc32 / adler32 ------------------------------------------------------ */

typedef uLong (*zcheck_fn)(uLong, const Bytef *, uInt);

static void
checksum(np_kcall *c, zcheck_fn fn)
{
    kreset(c);
    const unsigned char *p = buf_ptr(&c->arg[0].buf);
    size_t len = c->arg[0].buf.len;
    uLong value = c->arg[1].u32;
    while (len > UINT_MAX) {
        value = fn(value, p, UINT_MAX);
        p += UINT_MAX;
        len -= UINT_MAX;
    }
    /* Also for len 0: adler32() reduces an out-of-range start value even
     * then (zlib.adler32(b"", 0xffffffff) == 0xe000e). */
    value = fn(value, p, (uInt)len);
    c->ret.u64 = (uint64_t)(value & 0xffffffffU);
}

void
np_k_crc32(np_kcall *c)
{
    checksum(c, crc32);
}

void
np_k_adler32(np_kcall *c)
{
    checksum(c, adler32);
}

/* ---- the output buffer: CPython's block schedule, contiguous -------------- */

#define KB ((size_t)1024)
#define MB ((size_t)1024 * 1024)
static const size_t BLOCK_SIZE[] = {
    32 * KB, 64 * KB, 256 * KB, 1 * MB, 4 * MB, 8 * MB, 16 * MB, 16 * MB,
    32 * MB, 32 * MB, 32 * MB, 32 * MB, 64 * MB, 64 * MB, 128 * MB, 128 * MB,
    256 * MB,
};
#define NBLOCK_SIZES (sizeof BLOCK_SIZE / sizeof BLOCK_SIZE[0])
#undef KB
#undef MB

typedef struct {
    unsigned char *buf;
    size_t allocated;     /* total size of the blocks so far */
    size_t nblocks;
    size_t handed;        /* bytes given to zlib so far (end of the window) */
    size_t window_left;   /* first block bytes not yet given (decompress) */
} zout;

/* One block of `size` bytes; its first window goes to zst.  -1: no memory. */
static int
zout_init(zout *o, size_t size, z_stream *zst)
{
    memset(o, 0, sizeof *o);
    o->buf = malloc(size > 0 ? size : 1);
    if (o->buf == NULL) {
        return -1;
    }
    size_t window = size < UINT32_MAX ? size : UINT32_MAX;
    o->allocated = size;
    o->nblocks = 1;
    o->handed = window;
    o->window_left = size - window;
    zst->next_out = o->buf;
    zst->avail_out = (uInt)window;
    return 0;
}

/* zst->avail_out is 0: the next window of the first block, or a new block
 * (CPython's OutputBuffer_WindowGrow / _BlocksOutputBuffer_Grow). */
static int
zout_grow(zout *o, z_stream *zst)
{
    if (o->window_left > 0) {
        size_t window = o->window_left < UINT32_MAX ? o->window_left
                                                    : UINT32_MAX;
        zst->next_out = o->buf + o->handed;
        zst->avail_out = (uInt)window;
        o->handed += window;
        o->window_left -= window;
        return 0;
    }
    size_t block = BLOCK_SIZE[o->nblocks < NBLOCK_SIZES ? o->nblocks
                                                        : NBLOCK_SIZES - 1];
    if (block > SIZE_MAX - o->allocated) {
        return -1;
    }
    unsigned char *nb = realloc(o->buf, o->allocated + block);
    if (nb == NULL) {
        return -1;
    }
    o->buf = nb;
    zst->next_out = nb + o->allocated;
    zst->avail_out = (uInt)block;
    o->allocated += block;
    o->handed = o->allocated;
    o->nblocks++;
    return 0;
}

/* Hand the data written so far to c->out (never NULL on success). */
static void
zout_finish(zout *o, const z_stream *zst, np_kcall *c)
{
    size_t len = o->handed - zst->avail_out;
    unsigned char *shrunk = realloc(o->buf, len > 0 ? len : 1);
    c->out = shrunk != NULL ? shrunk : o->buf;
    c->out_len = len;
    o->buf = NULL;
}

static void
zout_free(zout *o)
{
    free(o->buf);
    o->buf = NULL;
}

/* CPython's zlib_error(): "Error %d <what>[: <zlib's message>]". */
static void
zfail(np_kcall *c, const z_stream *zst, int err, const char *what)
{
    const char *zmsg = NULL;
    /* On a version mismatch zst->msg is not initialized. */
    if (err == Z_VERSION_ERROR) {
        zmsg = "library version mismatch";
    }
    if (zmsg == NULL) {
        zmsg = zst->msg;
    }
    if (zmsg == NULL) {
        switch (err) {
        case Z_BUF_ERROR:
            zmsg = "incomplete or truncated stream";
            break;
        case Z_STREAM_ERROR:
            zmsg = "inconsistent stream state";
            break;
        case Z_DATA_ERROR:
            zmsg = "invalid input data";
            break;
        }
    }
    if (zmsg == NULL) {
        np_kfail(c, NP_K_ZLIB, err, "Error %d %s", err, what);
    }
    else {
        np_kfail(c, NP_K_ZLIB, err, "Error %d %s: %.200s", err, what, zmsg);
    }
}

/* The next piece of input, at most UINT_MAX bytes (arrange_input_buffer). */
static void
arrange_input(z_stream *zst, size_t *remains)
{
    zst->avail_in = (uInt)(*remains < UINT_MAX ? *remains : UINT_MAX);
    *remains -= zst->avail_in;
}

/* ---- compress ------------------------------------------------------------- */

void
np_k_compress(np_kcall *c)
{
    kreset(c);
    int level = c->arg[1].i32;
    int wbits = c->arg[2].i32;
    size_t left = c->arg[0].buf.len;
    z_stream zst;
    zout ob;
    int err, flush;

    memset(&zst, 0, sizeof zst);
    if (zout_init(&ob, BLOCK_SIZE[0], &zst) < 0) {
        np_kfail(c, NP_K_NOMEM, 0, "%s", unable_allocate_msg);
        return;
    }
    zst.zalloc = Z_NULL;
    zst.zfree = Z_NULL;
    zst.opaque = Z_NULL;
    zst.next_in = (Bytef *)buf_ptr(&c->arg[0].buf);
    err = deflateInit2(&zst, level, Z_DEFLATED, wbits, DEF_MEM_LEVEL,
                       Z_DEFAULT_STRATEGY);
    switch (err) {
    case Z_OK:
        break;
    case Z_MEM_ERROR:
        np_kfail(c, NP_K_NOMEM, err, "Out of memory while compressing data");
        goto error;
    case Z_STREAM_ERROR:
        np_kfail(c, NP_K_ZLIB, err, "Bad compression level");
        goto error;
    default:
        deflateEnd(&zst);
        zfail(c, &zst, err, "while compressing data");
        goto error;
    }

    do {
        arrange_input(&zst, &left);
        flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            if (zst.avail_out == 0 && zout_grow(&ob, &zst) < 0) {
                deflateEnd(&zst);
                np_kfail(c, NP_K_NOMEM, 0, "%s", unable_allocate_msg);
                goto error;
            }
            err = deflate(&zst, flush);
            if (err == Z_STREAM_ERROR) {
                deflateEnd(&zst);
                zfail(c, &zst, err, "while compressing data");
                goto error;
            }
        } while (zst.avail_out == 0);
    } while (flush != Z_FINISH);

    err = deflateEnd(&zst);
    if (err != Z_OK) {
        zfail(c, &zst, err, "while finishing compression");
        goto error;
    }
    zout_finish(&ob, &zst, c);
    return;
error:
    zout_free(&ob);
}

/* ---- decompress ----------------------------------------------------------- */

void
np_k_decompress(np_kcall *c)
{
    kreset(c);
    int wbits = c->arg[1].i32;
    int64_t bufsize = c->arg[2].i64;
    size_t left = c->arg[0].buf.len;
    z_stream zst;
    zout ob;
    int err, flush;

    if (bufsize < 0) {
        np_kfail(c, NP_K_VALUE, 0, "bufsize must be non-negative");
        return;
    }
    if (bufsize == 0) {
        bufsize = 1;
    }
    /* No bytes object can be this big (PyBytes stops at PY_SSIZE_T_MAX
     * minus its header): MemoryError without trying, as CPython ends. */
    if ((uint64_t)bufsize > (uint64_t)(SIZE_MAX >> 1) - 64) {
        np_kfail(c, NP_K_NOMEM, 0, "%s", unable_allocate_msg);
        return;
    }
    memset(&zst, 0, sizeof zst);
    if (zout_init(&ob, (size_t)bufsize, &zst) < 0) {
        np_kfail(c, NP_K_NOMEM, 0, "%s", unable_allocate_msg);
        return;
    }
    zst.zalloc = Z_NULL;
    zst.zfree = Z_NULL;
    zst.opaque = Z_NULL;
    zst.avail_in = 0;
    zst.next_in = (Bytef *)buf_ptr(&c->arg[0].buf);
    err = inflateInit2(&zst, wbits);
    switch (err) {
    case Z_OK:
        break;
    case Z_MEM_ERROR:
        np_kfail(c, NP_K_NOMEM, err, "Out of memory while decompressing data");
        goto error;
    default:
        inflateEnd(&zst);
        zfail(c, &zst, err, "while preparing to decompress data");
        goto error;
    }

    do {
        arrange_input(&zst, &left);
        flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            if (zst.avail_out == 0 && zout_grow(&ob, &zst) < 0) {
                inflateEnd(&zst);
                np_kfail(c, NP_K_NOMEM, 0, "%s", unable_allocate_msg);
                goto error;
            }
            err = inflate(&zst, flush);
            switch (err) {
            case Z_OK:
            case Z_BUF_ERROR:
            case Z_STREAM_END:
                break;
            case Z_MEM_ERROR:
                inflateEnd(&zst);
                np_kfail(c, NP_K_NOMEM, err,
                         "Out of memory while decompressing data");
                goto error;
            default:
                inflateEnd(&zst);
                zfail(c, &zst, err, "while decompressing data");
                goto error;
            }
        } while (zst.avail_out == 0);
        /* Data after the end of the stream is ignored, as zlib.decompress
         * ignores it (only Decompress objects keep it as unused_data). */
    } while (err != Z_STREAM_END && left != 0);

    if (err != Z_STREAM_END) {
        inflateEnd(&zst);
        zfail(c, &zst, err, "while decompressing data");
        goto error;
    }
    err = inflateEnd(&zst);
    if (err != Z_OK) {
        zfail(c, &zst, err, "while finishing decompression");
        goto error;
    }
    zout_finish(&ob, &zst, c);
    return;
error:
    zout_free(&ob);
}
