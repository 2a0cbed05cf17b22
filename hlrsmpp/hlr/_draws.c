/* A number's seeded draws in one call: the keyed BLAKE2b-128 (RFC 7693) of its digits,
 * as resolver.py's Resolver._draws computes with hashlib, unpacked as "<IHHII".
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

static const uint8_t SIGMA[12][16] = {
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
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

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
        const uint8_t *s = SIGMA[r];
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
} Draws;

static int draws_init(Draws *self, PyObject *args, PyObject *kw) {
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*", &key))
        return -1;
    if (key.len < 1 || key.len > 64) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "Draws(key): a key of 1 to 64 bytes");
        return -1;
    }
    uint8_t block[BLOCK] = {0};
    memcpy(block, key.buf, (size_t)key.len);
    for (int i = 0; i < 8; i++)
        self->keyed[i] = IV[i];
    self->keyed[0] ^= 0x01010000ULL ^ ((uint64_t)key.len << 8) ^ DIGEST;
    compress(self->keyed, block, BLOCK, 0);
    PyBuffer_Release(&key);
    return 0;
}

/* draw(msisdn) -> (outcome, ported, roaming, latency, pick): hash bits 0-31, 32-47,
 * 48-63, 64-95 and 96-127, little-endian, as struct "<IHHII" reads the digest. */
static PyObject *draws_draw(Draws *self, PyObject *msisdn) {
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(msisdn, &n);
    if (text == NULL)
        return NULL;
    if (n < 1 || n > BLOCK) {
        PyErr_SetString(PyExc_ValueError, "Draws.draw: a number of 1 to 128 bytes");
        return NULL;
    }
    uint8_t block[BLOCK] = {0};
    memcpy(block, text, (size_t)n);
    uint64_t h[8];
    memcpy(h, self->keyed, sizeof h);
    compress(h, block, BLOCK + (uint64_t)n, 1);
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

static PyMethodDef draws_methods[] = {
    {"draw", (PyCFunction)draws_draw, METH_O, "A number's (outcome, ported, roaming, latency, pick) draws."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DrawsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hlrsmpp.hlr._draws.Draws",
    .tp_basicsize = sizeof(Draws),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Draws(key): a number's seeded draws, the keyed BLAKE2b-128 of its digits.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)draws_init,
    .tp_methods = draws_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_draws", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__draws(void) {
    if (PyType_Ready(&DrawsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Draws", (PyObject *)&DrawsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
