/* The group commit in C: a SQLite connection that runs a commit's statements in one
 * transaction without the GIL, on a thread of its own that needs no GIL at all.
 *
 * Why: Python's sqlite3 module gives the GIL up and takes it back around every step and
 * binds every parameter with the GIL held; and a Python writer thread needs the GIL to
 * take its next job and to say it is done. While the event loop is busy it holds the
 * GIL, so each of those waits lasted until the loop was idle (up to the switch interval):
 * ~1 ms of every ~1.4 ms commit cycle at full load, when the commit itself took 0.4 ms.
 *
 * Committer(path, pragmas, statements):  every statement it will run, prepared now
 *   submit(steps) -> job id   the loop's thread reads (copies) the values, GIL held, and
 *                             queues the job; the committer thread runs every job queued
 *                             by then in ONE transaction (a group commit of group commits)
 *   fileno()                  readable once a transaction ended (a pipe: add_reader)
 *   completed()               [(last job id, None or the error), ...] in order, since the
 *                             last call; a transaction's outcome is every job's up to its id
 *                             (when a merged transaction fails, each job is run again alone)
 *   transaction(steps)        the same in the calling thread, synchronously (GIL released)
 *   close()                   commits what is queued, stops the thread, closes
 * steps: a list of (sql, params list); a params item that is a tuple stands for its values
 * in turn (the rows of a multi-row INSERT, unflattened).
 *
 * Optional: hlrsmpp/accounts/store.py runs the same statements through the sqlite3
 * module when this is not built (or HLRSMPP_PURE_PYTHON=1); the tests hold both to the
 * same database. What to write (SQL, chunking) is decided in store.py only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#define CACHE 64
#define ERRLEN 512

typedef struct {
    int type;  /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL */
    union { sqlite3_int64 i; double d; struct { const char *p; Py_ssize_t n; } s; } v;
} Value;

/* One submitted commit, owned by C only: its text and blobs are copied into arena. */
typedef struct Job {
    struct Job *next;
    long long id;
    Py_ssize_t n_steps;
    sqlite3_stmt **stmts;
    Py_ssize_t *counts;
    Value *values;
    char *arena;
} Job;

typedef struct {
    long long last;   /* the transaction held every job up to this id */
    char *error;      /* NULL when committed */
} Outcome;

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    int n_cached;
    PyObject *sql[CACHE];        /* strong references: the cache's keys */
    sqlite3_stmt *stmt[CACHE];
    pthread_mutex_t run;         /* one transaction at a time on db */
    pthread_mutex_t mu;          /* guards what follows */
    pthread_cond_t cv;
    Job *head, *tail;
    Outcome *outcomes;
    Py_ssize_t n_outcomes, cap_outcomes;
    int stopping, started, closed;
    int idle;                    /* the thread waits on cv for a job (guarded by mu) */
    long long next_id;
    pthread_t thread;
    int rfd, wfd;                /* the pipe the thread writes a byte to after each transaction */
} Committer;

static PyObject *OperationalError = NULL;  /* sqlite3.OperationalError, as the module raises */

/* ------------------------------------------------------------------ running steps */

static int bind_value(sqlite3_stmt *stmt, int k, const Value *v) {
    switch (v->type) {
    case SQLITE_INTEGER: return sqlite3_bind_int64(stmt, k, v->v.i);
    case SQLITE_FLOAT: return sqlite3_bind_double(stmt, k, v->v.d);
    case SQLITE_TEXT: return sqlite3_bind_text64(stmt, k, v->v.s.p, (sqlite3_uint64)v->v.s.n, SQLITE_STATIC, SQLITE_UTF8);
    case SQLITE_BLOB: return sqlite3_bind_blob64(stmt, k, v->v.s.p, (sqlite3_uint64)v->v.s.n, SQLITE_STATIC);
    default: return sqlite3_bind_null(stmt, k);
    }
}

/* The steps of one job inside an open transaction (no GIL). */
static int run_steps(const Job *job) {
    int rc = SQLITE_OK;
    const Value *v = job->values;
    for (Py_ssize_t i = 0; i < job->n_steps && rc == SQLITE_OK; i++) {
        sqlite3_stmt *stmt = job->stmts[i];
        for (Py_ssize_t k = 0; k < job->counts[i] && rc == SQLITE_OK; k++)
            rc = bind_value(stmt, (int)k + 1, v++);
        if (rc == SQLITE_OK) {
            while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
                ;
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);  /* no pointer into a freed job stays bound */
    }
    return rc;
}

/* BEGIN, the jobs in turn, COMMIT; on failure ROLLBACK and the message in err (no GIL). */
static int run_transaction(Committer *self, const Job *jobs, char *err) {
    pthread_mutex_lock(&self->run);
    int rc = sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (const Job *j = jobs; j != NULL && rc == SQLITE_OK; j = j->next)
        rc = run_steps(j);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, ERRLEN, "%s", sqlite3_errmsg(self->db));
        if (!sqlite3_get_autocommit(self->db))
            sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&self->run);
    return rc;
}

static void free_jobs(Job *j) {
    while (j != NULL) {
        Job *next = j->next;
        free(j->stmts);
        free(j->counts);
        free(j->values);
        free(j->arena);
        free(j);
        j = next;
    }
}

/* ------------------------------------------------------------------ reading steps (GIL) */

/* The prepared statement of sql: one of those Committer() prepared (found by the str
 * object, as store.py's statements are module constants, else by text). Nothing is
 * prepared later: that would wait for the connection's mutex, which a transaction holds
 * for as long as it waits for a lock, with the loop's thread blocked. */
static sqlite3_stmt *prepared(Committer *self, PyObject *sql) {
    for (int i = 0; i < self->n_cached; i++)
        if (self->sql[i] == sql)
            return self->stmt[i];
    for (int i = 0; i < self->n_cached; i++) {
        int eq = PyUnicode_Compare(self->sql[i], sql);
        if (eq == 0)
            return self->stmt[i];
        if (eq == -1 && PyErr_Occurred())
            return NULL;
    }
    PyErr_Format(PyExc_ValueError, "Committer: a statement it was not given: %.200U", sql);
    return NULL;
}

/* Prepare statements (a list of str) once, at start-up (GIL released: no thread yet). */
static int prepare_all(Committer *self, PyObject *statements) {
    Py_ssize_t n = PyList_GET_SIZE(statements);
    if (n > CACHE) {
        PyErr_Format(PyExc_ValueError, "Committer: at most %d statements", CACHE);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sql = PyList_GET_ITEM(statements, i);
        Py_ssize_t len;
        const char *text = PyUnicode_Check(sql) ? PyUnicode_AsUTF8AndSize(sql, &len) : NULL;
        if (text == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "Committer: statements are str");
            return -1;
        }
        sqlite3_stmt *stmt = NULL;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = sqlite3_prepare_v2(self->db, text, (int)len, &stmt, NULL);
        Py_END_ALLOW_THREADS
        if (rc != SQLITE_OK) {
            PyErr_Format(OperationalError, "%s: %.200s", sqlite3_errmsg(self->db), text);
            return -1;
        }
        self->sql[self->n_cached] = Py_NewRef(sql);
        self->stmt[self->n_cached++] = stmt;
    }
    return 0;
}

static int read_value(PyObject *o, Value *out, size_t *text_bytes) {
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
        *text_bytes += (size_t)out->v.s.n;
    } else if (PyBytes_Check(o)) {
        out->v.s.p = PyBytes_AS_STRING(o);
        out->v.s.n = PyBytes_GET_SIZE(o);
        out->type = SQLITE_BLOB;
        *text_bytes += (size_t)out->v.s.n;
    } else {
        PyErr_Format(PyExc_TypeError, "cannot store a %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

/* A Job of steps, its values copied: nothing of it refers to a Python object. */
static Job *read_job(Committer *self, PyObject *steps) {
    if (self->closed || self->rfd < 0) {
        PyErr_SetString(OperationalError, "Committer: closed");
        return NULL;
    }
    if (!PyList_Check(steps)) {
        PyErr_SetString(PyExc_TypeError, "steps: a list of (sql, params list)");
        return NULL;
    }
    Py_ssize_t n_steps = PyList_GET_SIZE(steps), n_values = 0;
    for (Py_ssize_t i = 0; i < n_steps; i++) {
        PyObject *step = PyList_GET_ITEM(steps, i);
        if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(step, 0))
            || !PyList_Check(PyTuple_GET_ITEM(step, 1))) {
            PyErr_SetString(PyExc_TypeError, "steps: a list of (sql, params list)");
            return NULL;
        }
        PyObject *params = PyTuple_GET_ITEM(step, 1);
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(params); k++) {
            PyObject *item = PyList_GET_ITEM(params, k);
            n_values += PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 1;
        }
    }
    Job *job = calloc(1, sizeof(Job));
    if (job == NULL)
        return (Job *)PyErr_NoMemory();
    job->n_steps = n_steps;
    job->stmts = malloc(sizeof(sqlite3_stmt *) * (size_t)(n_steps ? n_steps : 1));
    job->counts = malloc(sizeof(Py_ssize_t) * (size_t)(n_steps ? n_steps : 1));
    job->values = malloc(sizeof(Value) * (size_t)(n_values ? n_values : 1));
    if (job->stmts == NULL || job->counts == NULL || job->values == NULL) {
        free_jobs(job);
        return (Job *)PyErr_NoMemory();
    }
    size_t text_bytes = 0;
    Value *v = job->values;
    for (Py_ssize_t i = 0; i < n_steps; i++) {
        PyObject *step = PyList_GET_ITEM(steps, i), *params = PyTuple_GET_ITEM(step, 1);
        if ((job->stmts[i] = prepared(self, PyTuple_GET_ITEM(step, 0))) == NULL)
            goto fail;
        Value *first = v;
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(params); k++) {
            PyObject *item = PyList_GET_ITEM(params, k);
            if (PyTuple_Check(item)) {  /* a row: its values in turn */
                for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(item); j++)
                    if (read_value(PyTuple_GET_ITEM(item, j), v++, &text_bytes) < 0)
                        goto fail;
            } else if (read_value(item, v++, &text_bytes) < 0) {
                goto fail;
            }
        }
        job->counts[i] = v - first;
        if (job->counts[i] != sqlite3_bind_parameter_count(job->stmts[i])) {
            PyErr_Format(PyExc_ValueError, "statement %zd takes %d parameters, %zd given",
                         i, sqlite3_bind_parameter_count(job->stmts[i]), job->counts[i]);
            goto fail;
        }
    }
    /* Copy text and blobs: the job may run after the objects they came from are gone. */
    char *p = job->arena = malloc(text_bytes ? text_bytes : 1);
    if (p == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Value *w = job->values; w < v; w++)
        if (w->type == SQLITE_TEXT || w->type == SQLITE_BLOB) {
            memcpy(p, w->v.s.p, (size_t)w->v.s.n);
            w->v.s.p = p;
            p += w->v.s.n;
        }
    return job;
fail:
    free_jobs(job);
    return NULL;
}

/* ------------------------------------------------------------------ the thread */

/* Tell the loop how a transaction ended (no GIL). */
static void report(Committer *self, long long last, const char *err) {
    char *error = err == NULL ? NULL : strdup(err[0] ? err : "error");
    if (err != NULL && error == NULL)
        abort();  /* a failure must not read as a commit */
    pthread_mutex_lock(&self->mu);
    if (self->n_outcomes == self->cap_outcomes) {
        Py_ssize_t cap = self->cap_outcomes ? self->cap_outcomes * 2 : 16;
        Outcome *grown = realloc(self->outcomes, sizeof(Outcome) * (size_t)cap);
        if (grown == NULL)
            abort();  /* cannot tell the loop: better dead than silently unanswered */
        self->outcomes = grown;
        self->cap_outcomes = cap;
    }
    self->outcomes[self->n_outcomes++] = (Outcome){last, error};
    pthread_mutex_unlock(&self->mu);
    /* Non-blocking: a full pipe already says there is something to read. */
    ssize_t ignored = write(self->wfd, "c", 1);
    (void)ignored;
}

static void *committer_main(void *arg) {
    Committer *self = arg;
    char err[ERRLEN];
    for (;;) {
        pthread_mutex_lock(&self->mu);
        while (self->head == NULL && !self->stopping) {
            self->idle = 1;
            pthread_cond_wait(&self->cv, &self->mu);
            self->idle = 0;
        }
        Job *jobs = self->head;
        self->head = self->tail = NULL;
        pthread_mutex_unlock(&self->mu);
        if (jobs == NULL)  /* stopping, and everything queued is committed */
            return NULL;
        long long last = jobs->id;
        for (Job *j = jobs; j != NULL; j = j->next)
            last = j->id;
        if (run_transaction(self, jobs, err) == SQLITE_OK) {
            report(self, last, NULL);
        } else if (jobs->next == NULL) {
            report(self, last, err);
        } else {
            /* Each job again in a transaction of its own: a batch SQLite refuses fails
             * alone, not the batches merged with it. */
            for (Job *j = jobs; j != NULL; j = j->next) {
                Job *next = j->next;
                j->next = NULL;
                report(self, j->id, run_transaction(self, j, err) == SQLITE_OK ? NULL : err);
                j->next = next;
            }
        }
        free_jobs(jobs);
    }
}

/* ------------------------------------------------------------------ the type */

static int committer_init(Committer *self, PyObject *args, PyObject *kw) {
    const char *path;
    PyObject *pragmas, *statements;
    if (!PyArg_ParseTuple(args, "sO!O!", &path, &PyList_Type, &pragmas, &PyList_Type, &statements))
        return -1;
    if (self->db != NULL || self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Committer: already opened");
        return -1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS  /* FULLMUTEX: transaction() may be called while the thread runs */
    rc = sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
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
    if (prepare_all(self, statements) < 0)
        return -1;
    int fds[2];
    if (pipe(fds) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    self->rfd = fds[0];
    self->wfd = fds[1];
    pthread_mutex_init(&self->run, NULL);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    return 0;
}

static PyObject *committer_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    Committer *self = (Committer *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->rfd = self->wfd = -1;
    return (PyObject *)self;
}

/* Stop the thread once it has committed what is queued; close the connection. */
static void committer_shut(Committer *self) {
    if (self->closed || self->rfd < 0)
        return;
    self->closed = 1;
    if (self->started) {
        pthread_mutex_lock(&self->mu);
        self->stopping = 1;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < self->n_cached; i++) {
        sqlite3_finalize(self->stmt[i]);
        Py_CLEAR(self->sql[i]);
    }
    self->n_cached = 0;
    sqlite3_close(self->db);
    self->db = NULL;
    close(self->rfd);
    close(self->wfd);
    for (Py_ssize_t i = 0; i < self->n_outcomes; i++)
        free(self->outcomes[i].error);
    free(self->outcomes);
    self->outcomes = NULL;
    self->n_outcomes = self->cap_outcomes = 0;
    pthread_mutex_destroy(&self->run);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
}

static void committer_dealloc(Committer *self) {
    committer_shut(self);
    for (int i = 0; i < self->n_cached; i++) {  /* init failed before the pipe */
        sqlite3_finalize(self->stmt[i]);
        Py_CLEAR(self->sql[i]);
    }
    if (self->db != NULL)
        sqlite3_close(self->db);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *committer_close(Committer *self, PyObject *unused) {
    committer_shut(self);
    Py_RETURN_NONE;
}

static PyObject *committer_transaction(Committer *self, PyObject *steps) {
    Job *job = read_job(self, steps);
    if (job == NULL)
        return NULL;
    char err[ERRLEN];
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_transaction(self, job, err);
    Py_END_ALLOW_THREADS
    free_jobs(job);
    if (rc != SQLITE_OK) {
        PyErr_SetString(OperationalError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *committer_submit(Committer *self, PyObject *steps) {
    Job *job = read_job(self, steps);
    if (job == NULL)
        return NULL;
    if (!self->started) {
        int rc = pthread_create(&self->thread, NULL, committer_main, self);
        if (rc != 0) {
            free_jobs(job);
            errno = rc;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        self->started = 1;
    }
    long long id = job->id = ++self->next_id;  /* job is the thread's once queued */
    pthread_mutex_lock(&self->mu);
    if (self->tail == NULL)
        self->head = job;
    else
        self->tail->next = job;
    self->tail = job;
    int wake = self->idle;  /* busy, it takes this job when its transaction ends: no wake-up */
    pthread_mutex_unlock(&self->mu);
    /* Signalled after the unlock: signalled under mu, the woken thread blocked on mu at
     * once and the unlock woke it a second time, the loop's thread preempted at each. */
    if (wake)
        pthread_cond_signal(&self->cv);
    return PyLong_FromLongLong(id);
}

static PyObject *committer_completed(Committer *self, PyObject *unused) {
    if (self->rfd < 0 || self->closed)
        return PyList_New(0);
    char drain[256];
    while (read(self->rfd, drain, sizeof drain) == (ssize_t)sizeof drain)
        ;
    pthread_mutex_lock(&self->mu);
    Outcome *outcomes = self->outcomes;
    Py_ssize_t n = self->n_outcomes;
    self->outcomes = NULL;
    self->n_outcomes = self->cap_outcomes = 0;
    pthread_mutex_unlock(&self->mu);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (out != NULL) {
            PyObject *item = outcomes[i].error == NULL
                ? Py_BuildValue("(LO)", outcomes[i].last, Py_None)
                : Py_BuildValue("(Ls)", outcomes[i].last, outcomes[i].error);
            if (item == NULL)
                Py_CLEAR(out);
            else
                PyList_SET_ITEM(out, i, item);
        }
        free(outcomes[i].error);
    }
    free(outcomes);
    return out;
}

static PyObject *committer_fileno(Committer *self, PyObject *unused) {
    if (self->rfd < 0 || self->closed) {
        PyErr_SetString(OperationalError, "Committer: closed");
        return NULL;
    }
    return PyLong_FromLong(self->rfd);
}

static PyMethodDef committer_methods[] = {
    {"submit", (PyCFunction)committer_submit, METH_O, "Queue (sql, params) steps for the committer thread; the job id."},
    {"completed", (PyCFunction)committer_completed, METH_NOARGS, "[(last job id, None or error)] since the last call."},
    {"fileno", (PyCFunction)committer_fileno, METH_NOARGS, "Readable once a transaction has ended."},
    {"transaction", (PyCFunction)committer_transaction, METH_O, "Run (sql, params) steps in one transaction, now."},
    {"close", (PyCFunction)committer_close, METH_NOARGS, "Commit what is queued, stop the thread, close."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CommitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hlrsmpp.accounts._sqlite_batch.Committer",
    .tp_basicsize = sizeof(Committer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Committer(path, pragmas, statements): group commits on a thread that needs no GIL.",
    .tp_new = committer_new,
    .tp_init = (initproc)committer_init,
    .tp_dealloc = (destructor)committer_dealloc,
    .tp_methods = committer_methods,
};

/* ------------------------------------------------------------ the rollups' tally (GIL) */

/* sum_rollups(sums, rows, start, end_id) -> index: rows[start:] (lookup rows, LOOKUP_COLUMNS
 * order) added to sums, {(system_id, cc, network, err): [count, cost]}, up to the first
 * whose id is end_id or more (the next day's); returns its index, or len(rows). network:
 * p_nnc when ported and p_nnc is set, else nnc. The reference: domain.sum_rollup_rows. */
static PyObject *sum_rollups(PyObject *mod, PyObject *args) {
    PyObject *sums, *rows;
    Py_ssize_t start;
    long long end_id;
    if (!PyArg_ParseTuple(args, "O!O!nL", &PyDict_Type, &sums, &PyList_Type, &rows, &start, &end_id))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 13) {
            PyErr_SetString(PyExc_TypeError, "sum_rollups: a lookup row is a tuple of its columns");
            return NULL;
        }
        long long id = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 0));
        if (id == -1 && PyErr_Occurred())
            return NULL;
        if (id >= end_id)
            return PyLong_FromSsize_t(i);
        PyObject *p_nnc = PyTuple_GET_ITEM(r, 12);
        int ported = PyObject_IsTrue(PyTuple_GET_ITEM(r, 11));
        if (ported > 0)
            ported = PyObject_IsTrue(p_nnc);
        if (ported < 0)
            return NULL;
        PyObject *key = PyTuple_Pack(4, PyTuple_GET_ITEM(r, 2), PyTuple_GET_ITEM(r, 9),
                                     ported ? p_nnc : PyTuple_GET_ITEM(r, 10), PyTuple_GET_ITEM(r, 8));
        if (key == NULL)
            return NULL;
        PyObject *cost = PyTuple_GET_ITEM(r, 7);
        PyObject *v = PyDict_GetItemWithError(sums, key);  /* borrowed */
        if (v == NULL) {
            PyObject *fresh = PyErr_Occurred() ? NULL : Py_BuildValue("[iO]", 1, cost);
            int rc = fresh == NULL ? -1 : PyDict_SetItem(sums, key, fresh);
            Py_XDECREF(fresh);
            Py_DECREF(key);
            if (rc < 0)
                return NULL;
            continue;
        }
        Py_DECREF(key);
        if (!PyList_Check(v) || PyList_GET_SIZE(v) != 2) {
            PyErr_SetString(PyExc_TypeError, "sum_rollups: a sum is a list [count, cost]");
            return NULL;
        }
        long long was = PyLong_AsLongLong(PyList_GET_ITEM(v, 0));
        if (was == -1 && PyErr_Occurred())
            return NULL;
        PyObject *count = PyLong_FromLongLong(was + 1);
        if (count == NULL)
            return NULL;
        PyList_SetItem(v, 0, count);  /* steals */
        PyObject *total = PyNumber_Add(PyList_GET_ITEM(v, 1), cost);
        if (total == NULL)
            return NULL;
        PyList_SetItem(v, 1, total);
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef module_methods[] = {
    {"sum_rollups", sum_rollups, METH_VARARGS, "Add lookup rows to per-day rollup sums, up to the next day's."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sqlite_batch", NULL, -1, module_methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sqlite_batch(void) {
    if (!sqlite3_threadsafe()) {  /* built without mutexes: the Python writer instead */
        PyErr_SetString(PyExc_ImportError, "_sqlite_batch: libsqlite3 is not thread-safe");
        return NULL;
    }
    PyObject *sqlite3_module = PyImport_ImportModule("sqlite3");
    if (sqlite3_module == NULL)
        return NULL;
    OperationalError = PyObject_GetAttrString(sqlite3_module, "OperationalError");
    Py_DECREF(sqlite3_module);
    if (OperationalError == NULL || PyType_Ready(&CommitterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Committer", (PyObject *)&CommitterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
