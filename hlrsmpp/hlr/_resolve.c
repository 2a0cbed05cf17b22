/* The C twin of resolver.py's Resolver: Resolver.parse, the common case of
 * Resolver.resolve (below), and a number's seeded draws in one call: the keyed
 * BLAKE2b-128 (RFC 7693) of its digits, as Resolver._draws computes with hashlib,
 * unpacked as "<IHHII".
 *
 * Why: every mobile number's outcome, ported and roaming bits come from this hash; with
 * hashlib it is copy(), update(), encode(), digest() and an unpack, ~0.5 us a lookup of
 * the server's ~9. Here the key's block is compressed once, at construction; a number
 * (at most 128 bytes: E.164 has 15 digits) is one more compression.
 *
 * Optional: resolver.py uses hashlib when this is not built (or HLRSMPP_PURE_PYTHON=1);
 * the tests hold both to the same draws.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};  /* rounds 10 and 11 use rows 0 and 1 again */

#define BLOCK 128
#define DIGEST 16

static inline uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define G(a, b, c, d, x, y)               \
    do {                                  \
        v[a] = v[a] + v[b] + (x);         \
        v[d] = rotr(v[d] ^ v[a], 32);     \
        v[c] = v[c] + v[d];               \
        v[b] = rotr(v[b] ^ v[c], 24);     \
        v[a] = v[a] + v[b] + (y);         \
        v[d] = rotr(v[d] ^ v[a], 16);     \
        v[c] = v[c] + v[d];               \
        v[b] = rotr(v[b] ^ v[c], 63);     \
    } while (0)

/* RFC 7693 F: h absorbs one block; t bytes so far (< 2^64 here), last when final. */
static void compress(uint64_t h[8], const uint8_t block[BLOCK], uint64_t t, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++)
        m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= t;
    if (last)
        v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = SIGMA[r % 10];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

typedef struct {
    PyObject_HEAD
    uint64_t keyed[8];  /* the state after the key's block */
    /* Resolver's tables, from configure(): NULL until then. */
    PyObject *e164, *countries, *node_type, *destination_type, *mobile_types, *errs, *cuts;
    PyObject *prefix_lens, *prefixes, *ported_lens, *ported, *special, *latency_s, *timeout_s;
    PyObject *map_error_of, *empty;
    long mix_ported, mix_roaming;
} NativeResolver;

#define TABLES(X) X(e164) X(countries) X(node_type) X(destination_type) X(mobile_types) X(errs) \
    X(cuts) X(prefix_lens) X(prefixes) X(ported_lens) X(ported) X(special) X(latency_s) \
    X(timeout_s) X(map_error_of)

static PyObject *S_index, *S_depth, *S_map, *S_best;  /* attribute names, interned */

static int draws_init(NativeResolver *self, PyObject *args, PyObject *kw) {
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*", &key))
        return -1;
    if (key.len < 1 || key.len > 64) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "NativeResolver(key): a key of 1 to 64 bytes");
        return -1;
    }
    uint8_t block[BLOCK] = {0};
    memcpy(block, key.buf, (size_t)key.len);
    for (int i = 0; i < 8; i++)
        self->keyed[i] = IV[i];
    self->keyed[0] ^= 0x01010000ULL ^ ((uint64_t)key.len << 8) ^ DIGEST;
    if (self->empty == NULL && (self->empty = PyUnicode_FromString("")) == NULL) {
        PyBuffer_Release(&key);
        return -1;
    }
    compress(self->keyed, block, BLOCK, 0);
    PyBuffer_Release(&key);
    return 0;
}

/* The draws of msisdn: the first 128 bits of its keyed hash in h[0], h[1]. -1 with
 * ValueError for a number of no or more than 128 bytes; -1 on error. */
static int hash_number(const NativeResolver *self, PyObject *msisdn, uint64_t h[8]) {
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(msisdn, &n);
    if (text == NULL)
        return -1;
    if (n < 1 || n > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "NativeResolver: a number of 1 to 128 bytes");
        return -1;
    }
    uint8_t block[BLOCK] = {0};
    memcpy(block, text, (size_t)n);
    memcpy(h, self->keyed, sizeof self->keyed);
    compress(h, block, BLOCK + (uint64_t)n, 1);
    return 0;
}

/* draw(msisdn) -> (outcome, ported, roaming, latency, pick): hash bits 0-31, 32-47,
 * 48-63, 64-95 and 96-127, little-endian, as struct "<IHHII" reads the digest. */
static PyObject *draws_draw(NativeResolver *self, PyObject *msisdn) {
    uint64_t h[8];
    if (hash_number(self, msisdn, h) < 0)
        return NULL;
    const unsigned long fields[5] = {h[0] & 0xffffffffu, (h[0] >> 32) & 0xffff, h[0] >> 48,
                                     h[1] & 0xffffffffu, h[1] >> 32};
    PyObject *out = PyTuple_New(5);
    for (int i = 0; out != NULL && i < 5; i++) {
        PyObject *v = PyLong_FromUnsignedLong(fields[i]);
        if (v == NULL)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

/* ------------------------------------------------------------ parse and resolve */

static void draws_clear_tables(NativeResolver *self) {
#define CLEAR(name) Py_CLEAR(self->name);
    TABLES(CLEAR)
#undef CLEAR
}

static void draws_dealloc(NativeResolver *self) {
    draws_clear_tables(self);
    Py_CLEAR(self->empty);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* configure(e164, countries, Node, Destination, MOBILE_TYPES, mix.errs, mix.cuts,
 * mix.ported, mix.roaming, prefix_lens, prefixes, ported_lens, ported, special,
 * latency_s, timeout_s, map_error_of): what parse() and resolve() read (resolver.py calls
 * it at start-up and on every reload; the objects must not change afterwards). */
static PyObject *draws_configure(NativeResolver *self, PyObject *args) {
    PyObject *t[15];  /* in TABLES order */
    long mix_ported, mix_roaming;
    if (!PyArg_ParseTuple(args, "O!O!OOO!O!O!llO!O!O!O!O!OOO!", &PyDict_Type, &t[0], &PyDict_Type, &t[1],
                          &t[2], &t[3], &PyFrozenSet_Type, &t[4], &PyList_Type, &t[5], &PyList_Type, &t[6],
                          &mix_ported, &mix_roaming, &PyTuple_Type, &t[7], &PyDict_Type, &t[8],
                          &PyTuple_Type, &t[9], &PyDict_Type, &t[10], &PyDict_Type, &t[11],
                          &t[12], &t[13], &PyTuple_Type, &t[14]))
        return NULL;
    if (!PyType_Check(t[2]) || !PyType_Check(t[3]) || !PyType_IsSubtype((PyTypeObject *)t[3], &PyTuple_Type)
        || PyList_GET_SIZE(t[5]) != PyList_GET_SIZE(t[6]) || PyList_GET_SIZE(t[5]) == 0) {
        PyErr_SetString(PyExc_TypeError, "NativeResolver.configure: unexpected tables");
        return NULL;
    }
    draws_clear_tables(self);
    self->mix_ported = mix_ported;
    self->mix_roaming = mix_roaming;
    int i = 0;
#define SET(name) self->name = Py_NewRef(t[i++]);
    TABLES(SET)
#undef SET
    Py_RETURN_NONE;
}

/* Resolver.parse(destination_addr, ton, npi): the same answers (see resolver.py).
 * Keywords are accepted as in Python; the engine passes positionals, which cost nothing more. */
static PyObject *draws_parse(NativeResolver *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[3] = {"destination_addr", "ton", "npi"};
    PyObject *given[3] = {NULL, NULL, NULL};  /* NULL: not given (ton and npi default to 1) */
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 3)
        goto usage;
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = args[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (name == NULL)
            return NULL;
        int j = 0;
        while (j < 3 && strcmp(name, names[j]) != 0)
            j++;
        if (j == 3 || given[j] != NULL)
            goto usage;
        given[j] = args[nargs + k];
    }
    if (given[0] == NULL || !PyUnicode_Check(given[0]))
        goto usage;
    if (self->e164 == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeResolver: not configured");
        return NULL;
    }
    long ton = given[1] != NULL ? PyLong_AsLong(given[1]) : 1;
    long npi = given[2] != NULL ? PyLong_AsLong(given[2]) : 1;
    if ((ton == -1 || npi == -1) && PyErr_Occurred())
        return NULL;
    if (ton == 1 ? npi != 1 : (ton != 0 || (npi != 0 && npi != 1)))
        Py_RETURN_NONE;
    PyObject *addr = given[0];
    Py_ssize_t n = PyUnicode_GET_LENGTH(addr), start = 0;
    if (n && PyUnicode_READ_CHAR(addr, 0) == '+')
        start = 1;
    Py_ssize_t len = n - start;
    if (len < 1 || len > 64 || !PyUnicode_IS_ASCII(addr))
        Py_RETURN_NONE;
    const char *digits = (const char *)PyUnicode_DATA(addr) + start;
    for (Py_ssize_t i = 0; i < len; i++)
        if (digits[i] < '0' || digits[i] > '9')
            Py_RETURN_NONE;
    PyObject *key = PyUnicode_FromStringAndSize(digits, len < 3 ? len : 3);
    if (key == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(self->e164, key);  /* borrowed */
    Py_DECREF(key);
    if (hit == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 2) {
        PyErr_SetString(PyExc_TypeError, "NativeResolver.parse: e164 values are (cc, lengths)");
        return NULL;
    }
    PyObject *length = PyLong_FromSsize_t(len);
    if (length == NULL)
        return NULL;
    int ok = PySequence_Contains(PyTuple_GET_ITEM(hit, 1), length);
    Py_DECREF(length);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *msisdn = start ? PyUnicode_Substring(addr, start, n) : Py_NewRef(addr);
    if (msisdn == NULL)
        return NULL;
    PyTypeObject *type = (PyTypeObject *)self->destination_type;
    PyObject *dest = type->tp_alloc(type, 2);
    if (dest == NULL) {
        Py_DECREF(msisdn);
        return NULL;
    }
    PyTuple_SET_ITEM(dest, 0, msisdn);
    PyTuple_SET_ITEM(dest, 1, Py_NewRef(PyTuple_GET_ITEM(hit, 0)));
    return dest;
usage:
    PyErr_SetString(PyExc_TypeError, "parse(destination_addr: str, ton: int = 1, npi: int = 1)");
    return NULL;
}

/* msisdn[:k] as Python slices it (k past the end: all of it); a new reference. */
static PyObject *head(PyObject *msisdn, Py_ssize_t k) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(msisdn);
    return PyUnicode_Substring(msisdn, 0, k < n ? (k < 0 ? 0 : k) : n);
}

/* 1 when dict holds msisdn[:k] for one of lens, 0 when not, -1 on error. */
static int any_prefix(PyObject *msisdn, PyObject *lens, PyObject *dict) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(lens); i++) {
        Py_ssize_t k = PyLong_AsSsize_t(PyTuple_GET_ITEM(lens, i));
        if (k == -1 && PyErr_Occurred())
            return -1;
        PyObject *key = head(msisdn, k);
        if (key == NULL)
            return -1;
        PyObject *hit = PyDict_GetItemWithError(dict, key);
        Py_DECREF(key);
        if (hit != NULL)
            return 1;
        if (PyErr_Occurred())
            return -1;
    }
    return 0;
}

static long long_attr(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    long r = PyLong_AsLong(v);
    Py_DECREF(v);
    return r;
}

/* The common case of Resolver.resolve(dest), as the tuple of HlrResult's fields: a
 * number no rule, sandbox, subscriber or portability entry names, neither ported nor
 * roaming by the mix, at a fixed latency. None otherwise: resolve() in Python decides
 * those (the tests hold both to the same answers on every kind of number). */
static PyObject *draws_resolve_fields(NativeResolver *self, PyObject *dest) {
    if (self->countries == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeResolver: not configured");
        return NULL;
    }
    if (!PyTuple_Check(dest) || PyTuple_GET_SIZE(dest) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(dest, 0))) {
        PyErr_SetString(PyExc_TypeError, "resolve_fields(Destination)");
        return NULL;
    }
    PyObject *msisdn = PyTuple_GET_ITEM(dest, 0), *cc = PyTuple_GET_ITEM(dest, 1);
    Py_ssize_t n = PyUnicode_GET_LENGTH(msisdn);
    PyObject *country = PyDict_GetItemWithError(self->countries, cc);  /* borrowed */
    if (country == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    PyObject *node = PyObject_GetAttr(country, S_index);  /* new */
    if (node == NULL)
        return NULL;
    while (node != NULL && Py_TYPE(node) == (PyTypeObject *)self->node_type) {
        long depth = long_attr(node, S_depth);
        PyObject *map = PyObject_GetAttr(node, S_map);
        PyObject *key = map != NULL && !(depth == -1 && PyErr_Occurred()) ? head(msisdn, depth) : NULL;
        PyObject *next = NULL;
        if (key != NULL) {
            next = PyDict_GetItemWithError(map, key);
            if (next != NULL)
                Py_INCREF(next);
            else if (!PyErr_Occurred())
                next = PyObject_GetAttr(node, S_best);
        }
        Py_XDECREF(key);
        Py_XDECREF(map);
        Py_DECREF(node);
        node = next;  /* NULL on error */
    }
    if (node == NULL)
        return NULL;
    if (node == Py_None) {  /* tables not built yet: resolve() builds them */
        Py_DECREF(node);
        Py_RETURN_NONE;
    }
    PyObject *leaf = node;
    if (!PyTuple_Check(leaf) || PyTuple_GET_SIZE(leaf) <= n) {
        Py_DECREF(leaf);
        Py_RETURN_NONE;
    }
    PyObject *rng = PyTuple_GET_ITEM(leaf, n);
    if (!PyTuple_Check(rng) || PyTuple_GET_SIZE(rng) < 3) {
        Py_DECREF(leaf);
        Py_RETURN_NONE;
    }
    PyObject *ntype = PyTuple_GET_ITEM(rng, 1), *nnc = Py_NewRef(PyTuple_GET_ITEM(rng, 2));
    Py_DECREF(leaf);
    PyObject *out = Py_None;  /* None: the Python path */
    int hit = any_prefix(msisdn, self->prefix_lens, self->prefixes);
    if (hit)
        goto done;
    long err;
    int mobile = PySet_Contains(self->mobile_types, ntype);
    if (mobile < 0)
        goto error;
    if (mobile) {
        uint64_t h[8];
        if (hash_number(self, msisdn, h) < 0)
            goto error;
        unsigned long draw_err = h[0] & 0xffffffffu, draw_ported = (h[0] >> 32) & 0xffff, draw_roaming = h[0] >> 48;
        if ((long)draw_ported < self->mix_ported || (long)draw_roaming < self->mix_roaming)
            goto done;  /* ported or roaming: the Python path picks the networks */
        Py_ssize_t lo = 0, hi = PyList_GET_SIZE(self->cuts);  /* bisect_right(cuts, draw_err) */
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            long cut = PyLong_AsLong(PyList_GET_ITEM(self->cuts, mid));
            if (cut == -1 && PyErr_Occurred())
                goto error;
            if ((long)draw_err < cut)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo >= PyList_GET_SIZE(self->errs))
            goto done;
        err = PyLong_AsLong(PyList_GET_ITEM(self->errs, lo));
        if (err == -1 && PyErr_Occurred())
            goto error;
    } else {
        int empty = PyObject_Not(ntype);
        if (empty < 0)
            goto error;
        err = empty ? 12 : 18;
    }
    if ((hit = any_prefix(msisdn, self->ported_lens, self->ported)) != 0)
        goto done;
    PyObject *special = PyDict_GetItemWithError(self->special, msisdn);
    if (special != NULL)
        goto done;
    if (PyErr_Occurred())
        goto error;
    PyObject *seconds = err == 14 ? self->timeout_s : self->latency_s;
    if (seconds == Py_None || err < 0 || err >= PyTuple_GET_SIZE(self->map_error_of))
        goto done;
    PyObject *err_obj = PyLong_FromLong(err);
    if (err_obj == NULL)
        goto error;
    out = PyTuple_New(11);
    if (out == NULL) {
        Py_DECREF(err_obj);
        goto error;
    }
    PyObject *empty = self->empty;
    PyObject *fields[11] = {msisdn, cc, nnc, err_obj, Py_False, empty, Py_False, empty, empty, seconds,
                            PyTuple_GET_ITEM(self->map_error_of, err)};
    for (int i = 0; i < 11; i++)
        PyTuple_SET_ITEM(out, i, i == 3 ? err_obj : Py_NewRef(fields[i]));
    Py_DECREF(nnc);
    return out;
done:
    if (hit < 0)
        goto error;
    Py_DECREF(nnc);
    return Py_NewRef(out);
error:
    Py_DECREF(nnc);
    return NULL;
}

static PyMethodDef draws_methods[] = {
    {"draw", (PyCFunction)draws_draw, METH_O, "A number's (outcome, ported, roaming, latency, pick) draws."},
    {"configure", (PyCFunction)draws_configure, METH_VARARGS, "Resolver's tables, for parse and resolve_fields."},
    {"parse", (PyCFunction)(void (*)(void))draws_parse, METH_FASTCALL | METH_KEYWORDS,
     "Resolver.parse, the same answers."},
    {"resolve_fields", (PyCFunction)draws_resolve_fields, METH_O,
     "The common case of Resolver.resolve as a tuple of HlrResult's fields; None: the Python path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DrawsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hlrsmpp.hlr._resolve.NativeResolver",
    .tp_basicsize = sizeof(NativeResolver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "NativeResolver(key): a number's seeded draws, the keyed BLAKE2b-128 of its digits.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)draws_init,
    .tp_dealloc = (destructor)draws_dealloc,
    .tp_methods = draws_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_resolve", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__resolve(void) {
    if ((S_index = PyUnicode_InternFromString("index")) == NULL || (S_depth = PyUnicode_InternFromString("depth")) == NULL
        || (S_map = PyUnicode_InternFromString("map")) == NULL || (S_best = PyUnicode_InternFromString("best")) == NULL)
        return NULL;
    if (PyType_Ready(&DrawsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "NativeResolver", (PyObject *)&DrawsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
