/*
 * np_ffi.h -- calling a user's C function through libffi (the library ctypes
 * itself uses), as a kernel.  Plain C; no Python.h.
 *
 * The binding describes the function once, when it is wrapped (np_ffi_prepare
 * builds the libffi call interface); every call then only fills np_kcall's
 * arguments with values of the declared C types and runs np_k_ffi, on any
 * thread, without the GIL.  An np_ffi_fn is immutable after preparation, so
 * any number of calls may use it at once.
 */
#ifndef NP_FFI_H
#define NP_FFI_H

#include <ffi.h>

#include "np_kernels.h"

typedef struct np_ffi_fn {
    ffi_cif cif;
    ffi_type *atypes[NP_KMAX_ARGS];
    void (*fn)(void);
    int nargs;
    uint8_t rtype;                     /* enum np_ktype */
    uint8_t argtype[NP_KMAX_ARGS];     /* enum np_ktype, never VOID */
} np_ffi_fn;

/* Describe fn(argtype[0], ..., argtype[nargs-1]) -> rtype.  Returns 0, or
 * -1 if a type is out of range (VOID or PTR as a result is fine for VOID,
 * not for PTR; VOID as an argument is not), nargs is outside 0..NP_KMAX_ARGS
 * or fn is NULL; -2 if libffi refused the interface. */
int np_ffi_prepare(np_ffi_fn *f, void (*fn)(void), int rtype, int nargs,
                   const uint8_t *argtype);

/* The kernel: c->ctx is the np_ffi_fn; arguments in c->arg[i] as the member
 * of their type (buf.ptr for NP_T_PTR).  The result goes to c->ret: i64 for
 * signed integers (sign-extended), u64 for unsigned, f64 for float and double
 * (a float result is widened).  Always NP_K_OK: a C function cannot fail in a
 * way we can see. */
void np_k_ffi(np_kcall *c);

#endif /* NP_FFI_H */
