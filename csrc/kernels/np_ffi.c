/*
 * np_ffi.c -- calling a user's C function through libffi.  See np_ffi.h.
 *
 * libffi's result rule: an integral result narrower than ffi_arg is returned
 * widened to a whole ffi_arg (sign- or zero-extended as ffi_sarg / ffi_arg),
 * so the result storage must be at least sizeof(ffi_arg) and the value is
 * read back through ffi_sarg / ffi_arg, then narrowed to the declared type.
 * float and double results are stored as themselves (not widened).
 */
#include "np_ffi.h"

#include <string.h>

/* ffi_type for each enum np_ktype (NULL: not valid here). */
static ffi_type *
ffi_type_of(int t)
{
    switch (t) {
    case NP_T_VOID: return &ffi_type_void;
    case NP_T_I8: return &ffi_type_sint8;
    case NP_T_I16: return &ffi_type_sint16;
    case NP_T_I32: return &ffi_type_sint32;
    case NP_T_I64: return &ffi_type_sint64;
    case NP_T_U8: return &ffi_type_uint8;
    case NP_T_U16: return &ffi_type_uint16;
    case NP_T_U32: return &ffi_type_uint32;
    case NP_T_U64: return &ffi_type_uint64;
    case NP_T_F32: return &ffi_type_float;
    case NP_T_F64: return &ffi_type_double;
    case NP_T_PTR: return &ffi_type_pointer;
    default: return NULL;
    }
}

int
np_ffi_prepare(np_ffi_fn *f, void (*fn)(void), int rtype, int nargs,
               const uint8_t *argtype)
{
    memset(f, 0, sizeof *f);
    if (fn == NULL || nargs < 0 || nargs > NP_KMAX_ARGS ||
        (nargs > 0 && argtype == NULL)) {
        return -1;
    }
    if (rtype < NP_T_VOID || rtype >= NP_T_COUNT || rtype == NP_T_PTR) {
        return -1;
    }
    for (int i = 0; i < nargs; i++) {
        if (argtype[i] == NP_T_VOID || argtype[i] >= NP_T_COUNT) {
            return -1;
        }
        f->argtype[i] = argtype[i];
        f->atypes[i] = ffi_type_of(argtype[i]);
    }
    /* The cif keeps a pointer to f->atypes: f must stay where it is. */
    if (ffi_prep_cif(&f->cif, FFI_DEFAULT_ABI, (unsigned)nargs,
                     ffi_type_of(rtype), f->atypes) != FFI_OK) {
        memset(f, 0, sizeof *f);
        return -2;
    }
    f->fn = fn;
    f->nargs = nargs;
    f->rtype = (uint8_t)rtype;
    return 0;
}

void
np_k_ffi(np_kcall *c)
{
    const np_ffi_fn *f = c->ctx;
    void *avalues[NP_KMAX_ARGS];
    union {
        ffi_arg u;
        ffi_sarg s;
        int64_t i64;
        uint64_t u64;
        float f32;
        double f64;
        unsigned char space[16];
    } rv;

    c->status = NP_K_OK;
    c->code = 0;
    c->msg[0] = '\0';
    for (int i = 0; i < f->nargs; i++) {
        np_kval *a = &c->arg[i];
        switch (f->argtype[i]) {
        case NP_T_I8: avalues[i] = &a->i8; break;
        case NP_T_I16: avalues[i] = &a->i16; break;
        case NP_T_I32: avalues[i] = &a->i32; break;
        case NP_T_I64: avalues[i] = &a->i64; break;
        case NP_T_U8: avalues[i] = &a->u8; break;
        case NP_T_U16: avalues[i] = &a->u16; break;
        case NP_T_U32: avalues[i] = &a->u32; break;
        case NP_T_U64: avalues[i] = &a->u64; break;
        case NP_T_F32: avalues[i] = &a->f32; break;
        case NP_T_F64: avalues[i] = &a->f64; break;
        default: avalues[i] = &a->buf.ptr; break;   /* NP_T_PTR */
        }
    }
    memset(&rv, 0, sizeof rv);
    /* ffi_call does not modify the cif; the cast only drops const. */
    ffi_call((ffi_cif *)&f->cif, f->fn, &rv, avalues);
    switch (f->rtype) {
    case NP_T_I8: c->ret.i64 = (int8_t)rv.s; break;
    case NP_T_I16: c->ret.i64 = (int16_t)rv.s; break;
    case NP_T_I32: c->ret.i64 = (int32_t)rv.s; break;
    case NP_T_I64: c->ret.i64 = rv.i64; break;
    case NP_T_U8: c->ret.u64 = (uint8_t)rv.u; break;
    case NP_T_U16: c->ret.u64 = (uint16_t)rv.u; break;
    case NP_T_U32: c->ret.u64 = (uint32_t)rv.u; break;
    case NP_T_U64: c->ret.u64 = rv.u64; break;
    case NP_T_F32: c->ret.f64 = (double)rv.f32; break;
    case NP_T_F64: c->ret.f64 = rv.f64; break;
    default: c->ret.u64 = 0; break;   /* NP_T_VOID */
    }
}
