/*
 * np_sha256.c -- SHA-256: the np_k_sha256 kernel, as
 * hashlib.sha256(data).digest().
 *
 * Two implementations:
 *
 *   - OpenSSL's libcrypto, when it can be loaded at run time (SHA-NI / AVX2
 *     code, several times faster).  There is no build-time dependency on
 *     OpenSSL: on first use the library is dlopen()ed (libcrypto.so.3, then
 *     libcrypto.so.1.1, then libcrypto.so) and its one-shot
 *         unsigned char *SHA256(const unsigned char *d, size_t n,
 *                               unsigned char *md);
 *     is looked up with dlsym.  This happens once per process, under
 *     pthread_once; the handle is kept in a static and never dlclose()d (the
 *     function pointer must stay valid, and a live handle is not a leak).
 *     CPython's own _hashlib links libcrypto, so it is usually loaded already.
 *
 *   - A portable C11 implementation (FIPS 180-4, section 6.2), used when no
 *     libcrypto can be loaded, when its SHA256() reports a failure (NULL),
 *     or when NATIVEPOOL_PORTABLE_SHA256 is set to a non-empty value other
 *     than "0" in the environment at the first call (read once; for tests).
 *
 * Lengths are size_t all the way through and the message length in bits is
 * a 64-bit count, so buffers over 4 GiB hash correctly (OpenSSL's SHA256()
 * takes a size_t as well).
 */
#include "np_kernels.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static uint32_t
load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void
store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Process nblocks 64-byte blocks. */
static void
sha256_blocks(uint32_t h[8], const unsigned char *p, size_t nblocks)
{
    uint32_t w[64];
    while (nblocks-- > 0) {
        for (int t = 0; t < 16; t++) {
            w[t] = load_be32(p + 4 * t);
        }
        for (int t = 16; t < 64; t++) {
            w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
        uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = hh + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
            uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
        p += 64;
    }
}

/* The portable implementation: out = SHA-256 of p[0..len). */
static void
sha256_portable(const unsigned char *p, size_t len, unsigned char out[32])
{
    uint32_t h[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    };
    size_t full = len / 64;
    sha256_blocks(h, p, full);

    /* Padding: the tail, 0x80, zeros, then the length in bits as a 64-bit
     * big-endian number (one or two final blocks). */
    unsigned char last[128];
    size_t rest = len % 64;
    memset(last, 0, sizeof last);
    if (rest > 0) {
        memcpy(last, p + full * 64, rest);
    }
    last[rest] = 0x80;
    size_t nlast = rest < 56 ? 1 : 2;
    uint64_t bits = (uint64_t)len << 3;   /* the length mod 2**64, per spec */
    store_be32(last + nlast * 64 - 8, (uint32_t)(bits >> 32));
    store_be32(last + nlast * 64 - 4, (uint32_t)bits);
    sha256_blocks(h, last, nlast);

    for (int i = 0; i < 8; i++) {
        store_be32(out + 4 * i, h[i]);
    }
}

/* ---- OpenSSL's SHA256(), resolved once at run time ------------------------ */

typedef unsigned char *(*openssl_sha256_fn)(const unsigned char *d, size_t n,
                                            unsigned char *md);

/* Written only by sha256_resolve (under pthread_once, which orders those
 * writes before every return from pthread_once), read-only afterwards. */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static openssl_sha256_fn openssl_sha256;   /* NULL: portable */
static void *libcrypto_handle;             /* kept for the process lifetime */
static const char *sha256_backend_name = "portable";

static void
sha256_resolve(void)
{
    const char *force = getenv("NATIVEPOOL_PORTABLE_SHA256");
    if (force != NULL && force[0] != '\0' && strcmp(force, "0") != 0) {
        return;
    }
    static const char *const names[] = {
        "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            continue;
        }
        void *sym = dlsym(h, "SHA256");
        if (sym == NULL) {
            /* Nothing from this library was used: let it go. */
            dlclose(h);
            continue;
        }
        /* ISO C has no object-to-function pointer conversion; POSIX
         * guarantees the representations agree. */
        openssl_sha256_fn fn;
        _Static_assert(sizeof fn == sizeof sym, "function pointer size");
        memcpy(&fn, &sym, sizeof fn);
        libcrypto_handle = h;
        openssl_sha256 = fn;
        sha256_backend_name = names[i];
        return;
    }
}

/* Which implementation np_k_sha256 uses in this process: "portable", or the
 * name of the libcrypto it loaded (e.g. "libcrypto.so.3").  Resolves on first
 * use like the kernel does.  Not in np_kernels.h: for the C tests, which
 * declare it themselves. */
const char *np_sha256_backend(void);

const char *
np_sha256_backend(void)
{
    (void)pthread_once(&sha256_once, sha256_resolve);
    return sha256_backend_name;
}

void
np_k_sha256(np_kcall *c)
{
    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
    static const unsigned char empty[1];
    const unsigned char *p = c->arg[0].buf.ptr;
    size_t len = c->arg[0].buf.len;
    if (p == NULL) {
        p = empty;   /* never hand a NULL buffer to either implementation */
        len = 0;
    }
    (void)pthread_once(&sha256_once, sha256_resolve);
    if (openssl_sha256 == NULL || openssl_sha256(p, len, c->digest) == NULL) {
        /* no libcrypto, forced portable, or OpenSSL 3's SHA256() failed
         * (it returns NULL when e.g. no provider offers SHA-256) */
        sha256_portable(p, len, c->digest);
    }
    c->digest_len = 32;
}
