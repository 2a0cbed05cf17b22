/* The per-lookup PDUs of a bound session, in C: framing and reading submit_sm and
 * deliver_sm_resp, writing submit_sm_resp and deliver_sm (receipts); and the framer's
 * walk over a stream's headers (framer.frame_pdus), which counts the PDUs too.
 *
 * Optional: hlrsmpp/smpp/speedups.py falls back on the Python codec when this
 * module is not built, and the tests hold both to the same answers (the Python
 * codec is the reference). The field layout of submit_sm comes from codec.BODIES
 * through configure(), so the bounds are decided in one place.
 *
 * Everything here reads untrusted bytes: every read is checked against the frame,
 * and anything this code does not fully understand is left to the Python codec
 * (scan_bound stops before it), which answers it exactly as it always has.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <math.h>
#include <time.h>

#define MAX_FIELDS 32
#define KEEP_TON 0
#define KEEP_NPI 1
#define KEEP_ADDR 2

static int n_fields = 0;
static int field_size[MAX_FIELDS];  /* >0: C-Octet String of at most that size with NUL; 0: one octet; -1: sm_length */
static int field_keep[MAX_FIELDS];  /* KEEP_* or -1 */
static PyObject *submit_sm_type = NULL, *pdu_type = NULL;
static PyObject *cmd_submit_sm = NULL, *cmd_deliver_sm_resp = NULL;
static PyObject *s_command, *s_status, *s_sequence, *s_params, *s_tlvs, *s_ton, *s_npi, *s_addr,
                *s_body, *s_message_id, *s_empty, *s_id;

#define SUBMIT_SM 0x00000004u
#define SUBMIT_SM_RESP 0x80000004u
#define DELIVER_SM 0x00000005u
#define DELIVER_SM_RESP 0x80000005u

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

/* A deliver_sm's header (status 0): where its body starts. */
static inline unsigned char *put_deliver_head(unsigned char *o, Py_ssize_t length, uint32_t seq) {
    put32(o, (uint32_t)length);
    put32(o + 4, DELIVER_SM);
    put32(o + 8, 0);
    put32(o + 12, seq);
    return o + 16;
}

/* configure(fields, SubmitSm, Pdu, Command.SUBMIT_SM, Command.DELIVER_SM_RESP)
 * fields: ((size, keep), ...) from codec.BODIES[SUBMIT_SM], up to and including sm_length. */
static PyObject *configure(PyObject *mod, PyObject *args) {
    PyObject *fields, *st, *pt, *c1, *c2;
    if (!PyArg_ParseTuple(args, "O!OOOO", &PyTuple_Type, &fields, &st, &pt, &c1, &c2))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n < 1 || n > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "configure: 1 to 32 fields");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int size, keep;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "ii", &size, &keep))
            return NULL;
        if (size < -1 || size > 255 || keep < -1 || keep > KEEP_ADDR || (size == -1) != (i == n - 1)) {
            PyErr_SetString(PyExc_ValueError, "configure: bad field layout");
            return NULL;
        }
        field_size[i] = size;
        field_keep[i] = keep;
    }
    n_fields = (int)n;
    Py_XSETREF(submit_sm_type, Py_NewRef(st));
    Py_XSETREF(pdu_type, Py_NewRef(pt));
    Py_XSETREF(cmd_submit_sm, Py_NewRef(c1));
    Py_XSETREF(cmd_deliver_sm_resp, Py_NewRef(c2));
    Py_RETURN_NONE;
}

static PyObject *new_instance(PyObject *type) {
    PyTypeObject *t = (PyTypeObject *)type;
    return t->tp_alloc(t, 0);
}

/* Set an attribute, stealing the reference to value; -1 on error. */
static int set_steal(PyObject *obj, PyObject *name, PyObject *value) {
    if (value == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, value);
    Py_DECREF(value);
    return rc;
}

/* A submit_sm body [pos, end) read as codec.decode_submit_sm would, when it has no
 * TLVs; NULL with no error set when this code leaves the PDU to the Python codec. */
static PyObject *read_submit_sm(PyObject *buf, const unsigned char *b, Py_ssize_t pos, Py_ssize_t end,
                                uint32_t status, uint32_t sequence) {
    Py_ssize_t p = pos;
    int ton = 0, npi = 0;
    Py_ssize_t addr_at = 0, addr_len = 0;
    for (int i = 0; i < n_fields; i++) {
        int size = field_size[i];
        if (size > 0) {
            Py_ssize_t limit = p + size < end ? p + size : end;
            const unsigned char *nul = memchr(b + p, 0, (size_t)(limit - p));
            if (nul == NULL)
                return NULL;
            if (field_keep[i] == KEEP_ADDR) {
                addr_at = p;
                addr_len = (nul - b) - p;
            }
            p = (nul - b) + 1;
        } else {
            if (p >= end)
                return NULL;
            if (field_keep[i] == KEEP_TON)
                ton = b[p];
            else if (field_keep[i] == KEEP_NPI)
                npi = b[p];
            if (size == -1) {  /* sm_length, then the message, then nothing (no TLVs) */
                Py_ssize_t length = b[p];
                if (length > 254 || p + 1 + length != end)
                    return NULL;
            }
            p += 1;
        }
    }
    PyObject *pdu = new_instance(submit_sm_type);
    if (pdu == NULL)
        return NULL;
    if (PyObject_SetAttr(pdu, s_command, cmd_submit_sm) < 0
        || set_steal(pdu, s_status, PyLong_FromUnsignedLong(status)) < 0
        || set_steal(pdu, s_sequence, PyLong_FromUnsignedLong(sequence)) < 0
        || set_steal(pdu, s_ton, PyLong_FromLong(ton)) < 0
        || set_steal(pdu, s_npi, PyLong_FromLong(npi)) < 0
        || set_steal(pdu, s_addr, PyUnicode_DecodeLatin1((const char *)b + addr_at, addr_len, NULL)) < 0
        || set_steal(pdu, s_tlvs, PyDict_New()) < 0
        || set_steal(pdu, s_body, Py_BuildValue("(Onn)", buf, pos, end)) < 0) {
        Py_DECREF(pdu);
        return NULL;
    }
    return pdu;
}

/* A deliver_sm_resp whose message_id is empty (every receipt's answer). */
static PyObject *read_deliver_sm_resp(uint32_t status, uint32_t sequence) {
    PyObject *pdu = new_instance(pdu_type);
    if (pdu == NULL)
        return NULL;
    PyObject *params = PyDict_New();
    if (params == NULL || PyDict_SetItem(params, s_message_id, s_empty) < 0) {
        Py_XDECREF(params);
        Py_DECREF(pdu);
        return NULL;
    }
    if (PyObject_SetAttr(pdu, s_command, cmd_deliver_sm_resp) < 0
        || set_steal(pdu, s_status, PyLong_FromUnsignedLong(status)) < 0
        || set_steal(pdu, s_sequence, PyLong_FromUnsignedLong(sequence)) < 0
        || set_steal(pdu, s_params, params) < 0
        || set_steal(pdu, s_tlvs, PyDict_New()) < 0) {
        Py_DECREF(pdu);
        return NULL;
    }
    return pdu;
}

/* scan_bound(buf, pos, max_pdu_size, can_tx, can_rx, events) -> pos
 * Appends to events the run of whole PDUs from pos that a bound session hands to the
 * application as they are: submit_sm (can_tx) without TLVs, deliver_sm_resp (can_rx)
 * with an empty message_id. Stops at the first other PDU, partial PDU or bad length,
 * and returns where: the session's Python loop takes it from there. */
static PyObject *scan_bound(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyBytes_CheckExact(args[0]) || !PyList_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "scan_bound(bytes, pos, max_pdu_size, can_tx, can_rx, list)");
        return NULL;
    }
    if (submit_sm_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scan_bound: configure() first");
        return NULL;
    }
    PyObject *buf = args[0], *events = args[5];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_pdu = PyLong_AsSsize_t(args[2]);
    int can_tx = PyObject_IsTrue(args[3]), can_rx = PyObject_IsTrue(args[4]);
    if ((pos == -1 || max_pdu == -1 || can_tx < 0 || can_rx < 0) && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "scan_bound: pos outside the buffer");
        return NULL;
    }
    while (size - pos >= 16) {
        uint32_t length = be32(b + pos), command = be32(b + pos + 4);
        if (length < 16 || length > (uint64_t)max_pdu || (Py_ssize_t)length > size - pos)
            break;
        Py_ssize_t end = pos + (Py_ssize_t)length;
        uint32_t status = be32(b + pos + 8), sequence = be32(b + pos + 12);
        PyObject *pdu;
        if (command == SUBMIT_SM && can_tx)
            pdu = read_submit_sm(buf, b, pos + 16, end, status, sequence);
        else if (command == DELIVER_SM_RESP && can_rx && length == 17 && b[pos + 16] == 0)
            pdu = read_deliver_sm_resp(status, sequence);
        else
            break;
        if (pdu == NULL) {
            if (PyErr_Occurred())
                return NULL;
            break;
        }
        int rc = PyList_Append(events, pdu);
        Py_DECREF(pdu);
        if (rc < 0)
            return NULL;
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* Decimal digits of v into out (at least 20 bytes); returns their count. */
static int put_decimal(char *out, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static int as_u32(PyObject *o, uint32_t *out) {
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "does not fit in 32 bits");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* encode_submit_sm_resps(sequences, lookups) -> bytes: ESME_ROK submit_sm_resp with
 * message_id str(lookup.id) for each pair, in one buffer. */
static PyObject *encode_submit_sm_resps(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])
        || PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "encode_submit_sm_resps(list of sequences, list of lookups, same length)");
        return NULL;
    }
    PyObject *seqs = args[0], *lookups = args[1];
    Py_ssize_t n = PyList_GET_SIZE(seqs);
    /* 16 header + at most 20 digits + NUL each */
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 37);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out), *start = o;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t seq;
        if (as_u32(PyList_GET_ITEM(seqs, i), &seq) < 0)
            goto fail;
        PyObject *id = PyObject_GetAttr(PyList_GET_ITEM(lookups, i), s_id);
        if (id == NULL)
            goto fail;
        unsigned long long v = PyLong_AsUnsignedLongLong(id);
        Py_DECREF(id);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            goto fail;
        int digits = put_decimal((char *)o + 16, v);
        put32(o, (uint32_t)(17 + digits));
        put32(o + 4, SUBMIT_SM_RESP);
        put32(o + 8, 0);
        put32(o + 12, seq);
        o[16 + digits] = 0;
        o += 17 + digits;
    }
    if (_PyBytes_Resize(&out, o - start) < 0)
        return NULL;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static const unsigned char DELIVER_HEAD[] = {0, 0, 0, 'H', 'L', 'R', 0, 0, 0};  /* service_type "", 0/0 "HLR", dest 0/0 */
static const unsigned char DELIVER_MID[] = {0x04, 0, 0, 0, 0, 0, 0};         /* esm_class .. sm_default_msg_id */

/* encode_receipt(sequence, destination, text, data_coding, tlvs) -> bytes: codec.encode_receipt. */
static PyObject *encode_receipt(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "encode_receipt(sequence, bytes, bytes, data_coding, bytes)");
        return NULL;
    }
    uint32_t seq, dc;
    if (as_u32(args[0], &seq) < 0 || as_u32(args[3], &dc) < 0)
        return NULL;
    Py_ssize_t dl = PyBytes_GET_SIZE(args[1]), tl = PyBytes_GET_SIZE(args[2]), xl = PyBytes_GET_SIZE(args[4]);
    if (tl > 255 || dc > 255) {
        PyErr_SetString(PyExc_ValueError, "encode_receipt: short_message over 255 octets or data_coding over 255");
        return NULL;
    }
    Py_ssize_t length = 16 + (Py_ssize_t)sizeof DELIVER_HEAD + dl + 1 + (Py_ssize_t)sizeof DELIVER_MID + 3 + tl + xl;
    if (length > 0xFFFFFFFF) {
        PyErr_SetString(PyExc_OverflowError, "encode_receipt: too long");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, length);
    if (out == NULL)
        return NULL;
    unsigned char *o = put_deliver_head((unsigned char *)PyBytes_AS_STRING(out), length, seq);
    memcpy(o, DELIVER_HEAD, sizeof DELIVER_HEAD); o += sizeof DELIVER_HEAD;
    memcpy(o, PyBytes_AS_STRING(args[1]), dl); o += dl;
    *o++ = 0;
    memcpy(o, DELIVER_MID, sizeof DELIVER_MID); o += sizeof DELIVER_MID;
    *o++ = (unsigned char)dc;
    *o++ = 0;
    *o++ = (unsigned char)tl;
    memcpy(o, PyBytes_AS_STRING(args[2]), tl); o += tl;
    memcpy(o, PyBytes_AS_STRING(args[4]), xl);
    return out;
}

/* The octets of a str's first `limit` characters, all in latin-1, without a copy when
 * the str is; NULL (UnicodeEncodeError, as str.encode("latin-1")) when one is not. */
static const char *latin1_octets(PyObject *s, Py_ssize_t limit, Py_ssize_t *len, PyObject **keep) {
    *keep = NULL;
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "encode_text_receipt: source and destination are str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) {
        *len = n < limit ? n : limit;
        return (const char *)PyUnicode_1BYTE_DATA(s);
    }
    PyObject *head = PyUnicode_Substring(s, 0, n < limit ? n : limit);
    if (head == NULL)
        return NULL;
    *keep = PyUnicode_AsLatin1String(head);
    Py_DECREF(head);
    if (*keep == NULL)
        return NULL;
    *len = PyBytes_GET_SIZE(*keep);
    return PyBytes_AS_STRING(*keep);
}

/* encode_text_receipt(sequence, source, destination, text, data_coding, tlvs) -> bytes:
 * codec.encode_text_receipt (a text message's receipt, from the handset to the ESME). */
static PyObject *encode_text_receipt(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyBytes_Check(args[3]) || !PyBytes_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "encode_text_receipt(sequence, str, str, bytes, data_coding, bytes)");
        return NULL;
    }
    uint32_t seq, dc;
    if (as_u32(args[0], &seq) < 0 || as_u32(args[4], &dc) < 0)
        return NULL;
    Py_ssize_t sl, dl;
    PyObject *keep_s, *keep_d;
    const char *src = latin1_octets(args[1], PY_SSIZE_T_MAX, &sl, &keep_s);
    if (src == NULL)
        return NULL;
    /* destination_addr: at most 20 characters (its 21 octets, NUL included) */
    const char *dst = latin1_octets(args[2], 20, &dl, &keep_d);
    if (dst == NULL) {
        Py_XDECREF(keep_s);
        return NULL;
    }
    Py_ssize_t tl = PyBytes_GET_SIZE(args[3]), xl = PyBytes_GET_SIZE(args[5]);
    if (tl > 255 || dc > 255) {
        Py_XDECREF(keep_s);
        Py_XDECREF(keep_d);
        PyErr_SetString(PyExc_ValueError, "encode_text_receipt: short_message over 255 octets or data_coding over 255");
        return NULL;
    }
    Py_ssize_t length = 16 + 3 + sl + 3 + dl + 1 + (Py_ssize_t)sizeof DELIVER_MID + 3 + tl + xl;
    PyObject *out = length > 0xFFFFFFFF ? NULL : PyBytes_FromStringAndSize(NULL, length);
    if (out != NULL) {
        unsigned char *o = put_deliver_head((unsigned char *)PyBytes_AS_STRING(out), length, seq);
        *o++ = 0; *o++ = 1; *o++ = 1;  /* service_type "", source TON 1 NPI 1 */
        memcpy(o, src, sl); o += sl;
        *o++ = 0; *o++ = 0; *o++ = 0;  /* NUL, destination TON 0 NPI 0 */
        memcpy(o, dst, dl); o += dl;
        *o++ = 0;
        memcpy(o, DELIVER_MID, sizeof DELIVER_MID); o += sizeof DELIVER_MID;
        *o++ = (unsigned char)dc;
        *o++ = 0;
        *o++ = (unsigned char)tl;
        memcpy(o, PyBytes_AS_STRING(args[3]), tl); o += tl;
        memcpy(o, PyBytes_AS_STRING(args[5]), xl);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_OverflowError, "encode_text_receipt: too long");
    }
    Py_XDECREF(keep_s);
    Py_XDECREF(keep_d);
    return out;
}

/* YYMMDDhhmm (UTC) of the minute holding t, as receipts.receipt_date: t // 60 the way
 * Python floors a float. 0 on success; -1 when t is not a time this code formats. */
static int put_receipt_date(char *out, double t) {
    if (!(t >= 0.0 && t < 253402300800.0))  /* NaN, before 1970 or after 9999: Python's to do */
        return -1;
    double mod = fmod(t, 60.0), div = (t - mod) / 60.0, minute = floor(div);
    if (div - minute > 0.5)
        minute += 1.0;
    time_t at = (time_t)minute * 60;
    struct tm tm;
    if (gmtime_r(&at, &tm) == NULL || strftime(out, 11, "%y%m%d%H%M", &tm) != 10)
        return -1;
    return 0;
}

/* standard_receipt_parts(id, submitted, done, text_tail, tlv_tail[, delivered]) -> (text, tlvs) or None
 * Lookup._standard_parts after its cache: "id:ID sub:001 dlvrd:001 submit date:D done
 * date:D " + text_tail ("dlvrd:000" when delivered is false: a text message not
 * delivered), and tlv_tail + receipted_message_id (ID, NUL). None when a date is not
 * one this code formats or the text is over 254 octets: Python's to do. */
static PyObject *standard_receipt_parts(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if ((nargs != 5 && nargs != 6) || !PyBytes_Check(args[3]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "standard_receipt_parts(id, submitted, done, bytes, bytes[, delivered])");
        return NULL;
    }
    int delivered = nargs == 6 ? PyObject_IsTrue(args[5]) : 1;
    if (delivered < 0)
        return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(args[0]);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    double submitted = PyFloat_AsDouble(args[1]), done = PyFloat_AsDouble(args[2]);
    if ((submitted == -1.0 || done == -1.0) && PyErr_Occurred())
        return NULL;
    char mid[24], sub[11], dn[11];
    int digits = put_decimal(mid, id);
    if (put_receipt_date(sub, submitted) < 0 || put_receipt_date(dn, done) < 0)
        Py_RETURN_NONE;
    Py_ssize_t tail = PyBytes_GET_SIZE(args[3]), tlv_tail = PyBytes_GET_SIZE(args[4]);
    static const char A[] = "id:", B[] = " sub:001 dlvrd:001 submit date:", B0[] = " sub:001 dlvrd:000 submit date:",
                      D[] = " done date:";
    Py_ssize_t tl = 3 + digits + (Py_ssize_t)sizeof B - 1 + 10 + (Py_ssize_t)sizeof D - 1 + 10 + 1 + tail;
    if (tl > 254)
        Py_RETURN_NONE;
    PyObject *text = PyBytes_FromStringAndSize(NULL, tl);
    PyObject *tlvs = PyBytes_FromStringAndSize(NULL, tlv_tail + 4 + digits + 1);
    if (text == NULL || tlvs == NULL) {
        Py_XDECREF(text);
        Py_XDECREF(tlvs);
        return NULL;
    }
    char *o = PyBytes_AS_STRING(text);
    memcpy(o, A, 3); o += 3;
    memcpy(o, mid, digits); o += digits;
    memcpy(o, delivered ? B : B0, sizeof B - 1); o += sizeof B - 1;
    memcpy(o, sub, 10); o += 10;
    memcpy(o, D, sizeof D - 1); o += sizeof D - 1;
    memcpy(o, dn, 10); o += 10;
    *o++ = ' ';
    memcpy(o, PyBytes_AS_STRING(args[3]), tail);
    unsigned char *x = (unsigned char *)PyBytes_AS_STRING(tlvs);
    memcpy(x, PyBytes_AS_STRING(args[4]), tlv_tail);
    x += tlv_tail;
    x[0] = 0x00; x[1] = 0x1E;  /* receipted_message_id, last */
    x[2] = (unsigned char)((digits + 1) >> 8); x[3] = (unsigned char)(digits + 1);
    memcpy(x + 4, mid, digits);
    x[4 + digits] = 0;
    return Py_BuildValue("(NN)", text, tlvs);
}

/* submit_sm_message(body, pos) -> tuple or None: SubmitSm.message in C (what an SMSC
 * reads of a text message: service_type, source_addr, esm_class, schedule_delivery_time,
 * validity_period, registered_delivery, replace_if_present_flag, data_coding,
 * short_message). None when a NUL or the message is not where the layout puts it inside
 * the bytes: the Python reader's to answer, as it always has. */
static PyObject *latin1(const unsigned char *p, Py_ssize_t n) {
    if (n == 0) {
        Py_INCREF(s_empty);
        return s_empty;
    }
    return PyUnicode_DecodeLatin1((const char *)p, n, NULL);
}

static PyObject *submit_sm_message(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "submit_sm_message(body, pos)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[0]))
        Py_RETURN_NONE;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t at[5], from = pos;
    /* service_type; source_addr after its ton and npi; destination_addr likewise; then
     * esm_class, protocol_id, priority_flag before schedule_delivery_time; validity_period */
    static const int skip[5] = {0, 3, 3, 4, 1};
    for (int f = 0; f < 5; f++) {
        from = f ? at[f - 1] + skip[f] : pos;
        if (from < 0 || from >= len)
            Py_RETURN_NONE;
        const unsigned char *nul = memchr(b + from, 0, (size_t)(len - from));
        if (nul == NULL)
            Py_RETURN_NONE;
        at[f] = nul - b;
    }
    Py_ssize_t i = at[0], j = at[1], d = at[2], k = at[3], v = at[4];
    if (v + 6 > len || v + 6 + b[v + 5] > len)
        Py_RETURN_NONE;
    Py_ssize_t n = b[v + 5];
    /* The tuple filled in place: Py_BuildValue parses its format on every call. */
    PyObject *t = PyTuple_New(9);
    if (t == NULL)
        return NULL;
    PyObject *items[9] = {latin1(b + pos, i - pos), latin1(b + i + 3, j - i - 3), PyLong_FromLong(b[d + 1]),
                          latin1(b + d + 4, k - d - 4), latin1(b + k + 1, v - k - 1), PyLong_FromLong(b[v + 1]),
                          PyLong_FromLong(b[v + 2]), PyLong_FromLong(b[v + 3]),
                          PyBytes_FromStringAndSize((const char *)b + v + 6, n)};
    int failed = 0;
    for (int f = 0; f < 9; f++) {
        if (items[f] == NULL)
            failed = 1;
        else
            PyTuple_SET_ITEM(t, f, items[f]);
    }
    if (failed) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* frame_pdus(table, data, pos, max_pdu_size, add) -> int: framer.frame_pdus's loop in C.
 * Walks the PDU headers from pos: returns where the whole PDUs end, or -1 - p when the
 * header at p has a command_length below 16 or above max_pdu_size. Unless table is
 * None, calls add(table, command_id, status, n) once per run of PDUs with the same
 * command and status (that one included); the counting itself, and the bounds of its
 * keys, stay in Python. */
static int add_run(PyObject *add, PyObject *table, long long c, long long s, long long run) {
    PyObject *r = PyObject_CallFunction(add, "OLLL", table, c, s, run);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *frame_pdus(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "frame_pdus(table, data, pos, max_pdu_size, add)");
        return NULL;
    }
    PyObject *table = args[0], *add = args[4];
    int counting = table != Py_None;
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long max_pdu = PyLong_AsUnsignedLongLong(args[3]);
    if (max_pdu == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    long long last_c = -2, last_s = -2, run = 0;
    int bad = 0;
    PyObject *result = NULL;
    if (pos < 0)
        pos = 0;
    while (n - pos >= 16) {
        uint32_t length = be32(b + pos), command = be32(b + pos + 4), status = be32(b + pos + 8);
        bad = length < 16 || length > max_pdu;
        if (!bad && (Py_ssize_t)length > n - pos)
            break;
        if (counting) {
            if (command == last_c && status == last_s) {
                run++;
            } else {
                if (run && add_run(add, table, last_c, last_s, run) < 0)
                    goto done;
                last_c = command;
                last_s = status;
                run = 1;
            }
        }
        if (bad)
            break;
        pos += length;
    }
    if (run && add_run(add, table, last_c, last_s, run) < 0)
        goto done;
    result = PyLong_FromSsize_t(bad ? -1 - pos : pos);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "Take submit_sm's field layout and the PDU classes."},
    {"scan_bound", (PyCFunction)(void (*)(void))scan_bound, METH_FASTCALL, "Read the run of per-lookup PDUs."},
    {"encode_submit_sm_resps", (PyCFunction)(void (*)(void))encode_submit_sm_resps, METH_FASTCALL,
     "ESME_ROK submit_sm_resp for each (sequence, lookup)."},
    {"encode_receipt", (PyCFunction)(void (*)(void))encode_receipt, METH_FASTCALL, "A receipt deliver_sm."},
    {"encode_text_receipt", (PyCFunction)(void (*)(void))encode_text_receipt, METH_FASTCALL,
     "A text message's receipt deliver_sm."},
    {"frame_pdus", (PyCFunction)(void (*)(void))frame_pdus, METH_FASTCALL,
     "Walk a stream's whole PDUs, counting them per run."},
    {"submit_sm_message", (PyCFunction)(void (*)(void))submit_sm_message, METH_FASTCALL,
     "The fields of a submit_sm an SMSC reads of a text message."},
    {"standard_receipt_parts", (PyCFunction)(void (*)(void))standard_receipt_parts, METH_FASTCALL,
     "The default profile's receipt text and TLVs around a cached tail."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_command, "command");
    INTERN(s_status, "status");
    INTERN(s_sequence, "sequence");
    INTERN(s_params, "params");
    INTERN(s_tlvs, "tlvs");
    INTERN(s_ton, "dest_addr_ton");
    INTERN(s_npi, "dest_addr_npi");
    INTERN(s_addr, "destination_addr");
    INTERN(s_body, "_body");
    INTERN(s_message_id, "message_id");
    INTERN(s_empty, "");
    INTERN(s_id, "id");
#undef INTERN
    return PyModule_Create(&module);
}
