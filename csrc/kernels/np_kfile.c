/*
 * np_kfile.c -- the file kernels: read_file (open(path, 'rb').read()) and
 * read_into (os.pread into a caller's buffer until it is full or EOF).
 *
 * Errors are errno values (NP_K_ERRNO); the binding raises OSError with the
 * file name.  Like Python's FileIO, opening a directory reports EISDIR.
 * Plain C11 + POSIX, no Python.h.
 */
#define _GNU_SOURCE
#include "np_kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* One read()/pread() asks for at most this much (Linux transfers at most
 * 0x7ffff000 bytes per call anyway). */
#define READ_MAX ((size_t)1 << 30)

/* Size of the first buffer when fstat gives no size (/proc, pipes). */
#define READ_UNKNOWN_SIZE ((size_t)8192)

static void
kreset(np_kcall *c)
{
    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
}

/* Open path read-only; 0 and *fd / *st, or an errno value.  A NULL path (an
 * empty buffer) is the empty path: ENOENT, as open("") gives. */
static int
open_for_read(const np_kbuf *path, int *fd_out, struct stat *st)
{
    const char *p = path->ptr != NULL ? (const char *)path->ptr : "";
    int fd;
    do {
        fd = open(p, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return errno;
    }
    if (fstat(fd, st) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    if (S_ISDIR(st->st_mode)) {
        /* read() would give EISDIR too; Python's open() checks up front. */
        close(fd);
        return EISDIR;
    }
    *fd_out = fd;
    return 0;
}

void
np_k_read_file(np_kcall *c)
{
    kreset(c);
    int fd;
    struct stat st;
    int err = open_for_read(&c->arg[0].buf, &fd, &st);
    if (err != 0) {
        np_kfail_errno(c, err);
        return;
    }
    /* The size is only a hint: /proc files say 0 and files can grow.  One
     * byte more than the size lets the read that sees EOF need no realloc. */
    size_t cap = READ_UNKNOWN_SIZE;
    if (st.st_size > 0 && (uintmax_t)st.st_size < SIZE_MAX / 2) {
        cap = (size_t)st.st_size + 1;
    }
    size_t len = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        np_kfail(c, NP_K_NOMEM, 0, NULL);
        return;
    }
    for (;;) {
        if (len == cap) {
            size_t grow = cap / 2 > READ_UNKNOWN_SIZE ? cap / 2
                                                      : READ_UNKNOWN_SIZE;
            unsigned char *nb = grow <= SIZE_MAX - cap
                                    ? realloc(buf, cap + grow) : NULL;
            if (nb == NULL) {
                free(buf);
                close(fd);
                np_kfail(c, NP_K_NOMEM, 0, NULL);
                return;
            }
            buf = nb;
            cap += grow;
        }
        size_t want = cap - len < READ_MAX ? cap - len : READ_MAX;
        ssize_t n = read(fd, buf + len, want);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            free(buf);
            close(fd);
            np_kfail_errno(c, err);
            return;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (cap - len > 4096 || len == 0) {
        unsigned char *nb = realloc(buf, len > 0 ? len : 1);
        if (nb != NULL) {
            buf = nb;
        }
    }
    c->out = buf;
    c->out_len = len;
}

void
np_k_read_into(np_kcall *c)
{
    kreset(c);
    c->ret.i64 = 0;
    unsigned char *dst = c->arg[1].buf.ptr;
    size_t len = c->arg[1].buf.len;
    int64_t offset = c->arg[2].i64;
    if (offset < 0) {
        np_kfail(c, NP_K_VALUE, 0, "offset must be non-negative");
        return;
    }
    if (dst == NULL) {
        len = 0;
    }
    int fd;
    struct stat st;
    int err = open_for_read(&c->arg[0].buf, &fd, &st);
    if (err != 0) {
        np_kfail_errno(c, err);
        return;
    }
    size_t done = 0;
    while (done < len) {
        /* Keep offset + done + want within off_t (no file is that big). */
        uint64_t pos = (uint64_t)offset + done;
        if (pos >= (uint64_t)INT64_MAX) {
            break;
        }
        size_t want = len - done < READ_MAX ? len - done : READ_MAX;
        if ((uint64_t)want > (uint64_t)INT64_MAX - pos) {
            want = (size_t)((uint64_t)INT64_MAX - pos);
        }
        ssize_t n = pread(fd, dst + done, want, (off_t)pos);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            close(fd);
            np_kfail_errno(c, err);
            return;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    close(fd);
    c->ret.i64 = (int64_t)done;
}
