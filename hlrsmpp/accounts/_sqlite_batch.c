/* One group commit's statements in one SQLite transaction, with the GIL released for all
 * of it. Python's sqlite3 module gives the GIL up and takes it back around every step,
 * and binds every parameter with the GIL held: on the commit thread that is a wait for the
 * event loop's thread at every statement. Here the parameters are read once (GIL held),
 * then BEGIN, every statement and COMMIT run without it.
 *
 * Optional: hlrsmpp/accounts/store.py runs the same statements through the sqlite3
 * module when this is not built (or HLRSMPP_PURE_PYTHON=1); the tests hold both to the
 * same database. What to write (SQL, chunking) is decided in store.py only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <string.h>

#define CACHE 64

typedef struct {
    int type;  /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL */
    union { sqlite3_int64 i; double d; struct { const char *p; Py_ssize_t n; } s; } v;
} Value;

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    int n_cached;
    PyObject *sql[CACHE];        /* strong references: the cache's keys */
    sqlite3_stmt *stmt[CACHE];
} Batch;

static PyObject *OperationalError = NULL;  /* sqlite3.OperationalError, as the module raises */

static int batch_init(Batch *self, PyObject *args, PyObject *kw) {
    const char *path;
    PyObject *pragmas;
    if (!PyArg_ParseTuple(args, "sO!", &path, &PyList_Type, &pragmas))
        return -1;
    if (self->db != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Batch: already open");
        return -1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE, NULL);
    Py_END_ALLOW_THREADS
    if (rc != SQLITE_OK) {
        PyErr_Format(OperationalError, "%s: %s", path, self->db ? sqlite3_errmsg(self->db) : "cannot open");
        sqlite3_close(self->db);
        self->db = NULL;
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pragmas); i++) {
        const char *sql = PyUnicode_AsUTF8(PyList_GET_ITEM(pragmas, i));
        if (sql == NULL)
            return -1;
        char *err = NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = sqlite3_exec(self->db, sql, NULL, NULL, &err);
        Py_END_ALLOW_THREADS
        if (rc != SQLITE_OK) {
            PyErr_Format(OperationalError, "%s: %s", sql, err ? err : "error");
            sqlite3_free(err);
            return -1;
        }
    }
    return 0;
}

static void batch_close_db(Batch *self) {
    for (int i = 0; i < self->n_cached; i++) {
        sqlite3_finalize(self->stmt[i]);
        Py_CLEAR(self->sql[i]);
    }
    self->n_cached = 0;
    if (self->db != NULL) {
        sqlite3_close(self->db);
        self->db = NULL;
    }
}

static void batch_dealloc(Batch *self) {
    batch_close_db(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *batch_close(Batch *self, PyObject *unused) {
    batch_close_db(self);
    Py_RETURN_NONE;
}

/* The prepared statement of sql (GIL held): cached by the str object, as store.py's
 * statements are module constants; prepared on first use. */
static sqlite3_stmt *prepared(Batch *self, PyObject *sql) {
    for (int i = 0; i < self->n_cached; i++)
        if (self->sql[i] == sql)
            return self->stmt[i];
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(sql, &n);
    if (text == NULL)
        return NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(self->db, text, (int)n, &stmt, NULL) != SQLITE_OK) {
        PyErr_Format(OperationalError, "%s", sqlite3_errmsg(self->db));
        return NULL;
    }
    if (self->n_cached == CACHE) {  /* not expected: store.py has a few dozen statements */
        sqlite3_finalize(self->stmt[0]);
        Py_DECREF(self->sql[0]);
        memmove(self->stmt, self->stmt + 1, sizeof self->stmt[0] * (CACHE - 1));
        memmove(self->sql, self->sql + 1, sizeof self->sql[0] * (CACHE - 1));
        self->n_cached--;
    }
    self->sql[self->n_cached] = Py_NewRef(sql);
    self->stmt[self->n_cached++] = stmt;
    return stmt;
}

static int read_value(PyObject *o, Value *out) {
    if (o == Py_None) {
        out->type = SQLITE_NULL;
    } else if (PyLong_Check(o)) {
        int overflow;
        out->v.i = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to SQLite INTEGER");
            return -1;
        }
        if (out->v.i == -1 && PyErr_Occurred())
            return -1;
        out->type = SQLITE_INTEGER;
    } else if (PyFloat_Check(o)) {
        out->v.d = PyFloat_AS_DOUBLE(o);
        out->type = SQLITE_FLOAT;
    } else if (PyUnicode_Check(o)) {
        out->v.s.p = PyUnicode_AsUTF8AndSize(o, &out->v.s.n);
        if (out->v.s.p == NULL)
            return -1;
        out->type = SQLITE_TEXT;
    } else if (PyBytes_Check(o)) {
        out->v.s.p = PyBytes_AS_STRING(o);
        out->v.s.n = PyBytes_GET_SIZE(o);
        out->type = SQLITE_BLOB;
    } else {
        PyErr_Format(PyExc_TypeError, "cannot store a %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

static int bind_value(sqlite3_stmt *stmt, int k, const Value *v) {
    switch (v->type) {
    case SQLITE_INTEGER: return sqlite3_bind_int64(stmt, k, v->v.i);
    case SQLITE_FLOAT: return sqlite3_bind_double(stmt, k, v->v.d);
    case SQLITE_TEXT: return sqlite3_bind_text64(stmt, k, v->v.s.p, (sqlite3_uint64)v->v.s.n, SQLITE_STATIC, SQLITE_UTF8);
    case SQLITE_BLOB: return sqlite3_bind_blob64(stmt, k, v->v.s.p, (sqlite3_uint64)v->v.s.n, SQLITE_STATIC);
    default: return sqlite3_bind_null(stmt, k);
    }
}

/* transaction(steps): steps is a list of (sql, params list); all run in one transaction,
 * rolled back (and sqlite3.OperationalError raised) if any fails. A params item that is a
 * tuple stands for its values in turn (the rows of a multi-row INSERT, unflattened). The
 * params are read before the GIL is released and must not change meanwhile. */
static PyObject *batch_transaction(Batch *self, PyObject *steps) {
    if (self->db == NULL) {
        PyErr_SetString(OperationalError, "Batch: closed");
        return NULL;
    }
    if (!PyList_Check(steps)) {
        PyErr_SetString(PyExc_TypeError, "transaction(list of (sql, params list))");
        return NULL;
    }
    Py_ssize_t n_steps = PyList_GET_SIZE(steps), n_values = 0;
    for (Py_ssize_t i = 0; i < n_steps; i++) {
        PyObject *step = PyList_GET_ITEM(steps, i);
        if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(step, 0))
            || !PyList_Check(PyTuple_GET_ITEM(step, 1))) {
            PyErr_SetString(PyExc_TypeError, "transaction(list of (sql, params list))");
            return NULL;
        }
        PyObject *params = PyTuple_GET_ITEM(step, 1);
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(params); k++) {
            PyObject *item = PyList_GET_ITEM(params, k);
            n_values += PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 1;
        }
    }
    sqlite3_stmt **stmts = PyMem_Malloc(sizeof(sqlite3_stmt *) * (size_t)(n_steps ? n_steps : 1));
    Py_ssize_t *counts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n_steps ? n_steps : 1));
    Value *values = PyMem_Malloc(sizeof(Value) * (size_t)(n_values ? n_values : 1));
    if (stmts == NULL || counts == NULL || values == NULL) {
        PyMem_Free(stmts);
        PyMem_Free(counts);
        PyMem_Free(values);
        return PyErr_NoMemory();
    }
    Value *v = values;
    for (Py_ssize_t i = 0; i < n_steps; i++) {
        PyObject *step = PyList_GET_ITEM(steps, i), *params = PyTuple_GET_ITEM(step, 1);
        if ((stmts[i] = prepared(self, PyTuple_GET_ITEM(step, 0))) == NULL)
            goto fail;
        Value *first = v;
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(params); k++) {
            PyObject *item = PyList_GET_ITEM(params, k);
            if (PyTuple_Check(item)) {  /* a row: its values in turn */
                for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(item); j++)
                    if (read_value(PyTuple_GET_ITEM(item, j), v++) < 0)
                        goto fail;
            } else if (read_value(item, v++) < 0) {
                goto fail;
            }
        }
        counts[i] = v - first;
        if (counts[i] != sqlite3_bind_parameter_count(stmts[i])) {
            PyErr_Format(PyExc_ValueError, "statement %zd takes %d parameters, %zd given",
                         i, sqlite3_bind_parameter_count(stmts[i]), counts[i]);
            goto fail;
        }
    }
    int rc = SQLITE_OK;
    char failed[512] = "";
    Py_BEGIN_ALLOW_THREADS
    rc = sqlite3_exec(self->db, "BEGIN", NULL, NULL, NULL);
    v = values;
    for (Py_ssize_t i = 0; i < n_steps && rc == SQLITE_OK; i++) {
        sqlite3_stmt *stmt = stmts[i];
        for (Py_ssize_t k = 0; k < counts[i] && rc == SQLITE_OK; k++)
            rc = bind_value(stmt, (int)k + 1, v++);
        if (rc == SQLITE_OK) {
            while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                ;
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);  /* no pointer into the caller's objects stays bound */
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(failed, sizeof failed, "%s", sqlite3_errmsg(self->db));
        if (!sqlite3_get_autocommit(self->db))
            sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(stmts);
    PyMem_Free(counts);
    PyMem_Free(values);
    if (rc != SQLITE_OK) {
        PyErr_SetString(OperationalError, failed);
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    PyMem_Free(stmts);
    PyMem_Free(counts);
    PyMem_Free(values);
    return NULL;
}

static PyMethodDef batch_methods[] = {
    {"transaction", (PyCFunction)batch_transaction, METH_O, "Run (sql, params) steps in one transaction."},
    {"close", (PyCFunction)batch_close, METH_NOARGS, "Close the connection."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hlrsmpp.accounts._sqlite_batch.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Batch(path, pragmas): a SQLite connection that runs a transaction's statements without the GIL.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batch_init,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_methods = batch_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sqlite_batch", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sqlite_batch(void) {
    PyObject *sqlite3_module = PyImport_ImportModule("sqlite3");
    if (sqlite3_module == NULL)
        return NULL;
    OperationalError = PyObject_GetAttrString(sqlite3_module, "OperationalError");
    Py_DECREF(sqlite3_module);
    if (OperationalError == NULL || PyType_Ready(&BatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
