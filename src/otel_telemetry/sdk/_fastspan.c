/* The span fast path of span_plans.SpanPlans.end in C (optional: span_plans.py is the reference
 * and the fallback when this module is not built or OTEL_TELEMETRY_SPEEDUPS=0).
 *
 * Ender.end(span) runs on the thread that ends a span and must not block or raise: for a span of
 * a known shape whose values are all known clean it msgpack-encodes the span's wire record
 * (wire.KIND_SPAN_SHAPES, the same bytes msgpack-python writes for the tuple span_plans.end
 * builds) and appends (group, record bytes) to the ReadyBatches deque, exactly as
 * ReadyBatches.add does; anything else returns False and leaves no exception set. Ender.on_end
 * does the same and calls `slow(span)` for a span it did not take, so a span processor can use
 * it as its on_end with no Python frame in between.
 *
 * Everything runs under the GIL and calls no Python code between the bound check and the append
 * (attribute reads of SDK objects, dict/set lookups of str keys, builtin str()), so appends from
 * several threads interleave like the Python version's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *s_status, *s_description, *s_status_code, *s_events, *s_links, *s_dq,
    *s_attributes, *s_dict, *s_name, *s_kind, *s_scope, *s_resource, *s_context, *s_parent,
    *s_start, *s_end, *s_closed, *s_since, *s_recs, *s_ready, *s_batch, *s_max, *s_flush,
    *s_append;
static PyObject *monotonic; /* time.monotonic */

/* ------------------------------------------------------------------ a growable byte buffer */
typedef struct {
    char *p;
    Py_ssize_t len, cap;
    char small[1024];
} Buf;

static void buf_init(Buf *b) { b->p = b->small; b->len = 0; b->cap = sizeof b->small; }
static void buf_free(Buf *b) { if (b->p != b->small) PyMem_Free(b->p); }

static int buf_grow(Buf *b, Py_ssize_t need) {
    Py_ssize_t cap = b->cap;
    while (cap - b->len < need) cap *= 2;
    char *p = PyMem_Malloc((size_t)cap);
    if (p == NULL) return -1;
    memcpy(p, b->p, (size_t)b->len);
    buf_free(b);
    b->p = p;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, n) do { if ((b)->cap - (b)->len < (Py_ssize_t)(n) && buf_grow((b), (n)) < 0) return -1; } while (0)

static inline void put1(Buf *b, unsigned char c) { b->p[b->len++] = (char)c; }
static inline void put_be(Buf *b, unsigned long long v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) b->p[b->len++] = (char)((v >> (8 * i)) & 0xff);
}

/* Each packer returns 0 (packed), 1 (not packable here: the caller takes the general path) or -1
 * (out of memory). The byte layouts are msgpack-python's (use_bin_type=True). */
static int pack_nil(Buf *b) { RESERVE(b, 1); put1(b, 0xc0); return 0; }

static int pack_array_header(Buf *b, Py_ssize_t n) {
    RESERVE(b, 5);
    if (n < 16) put1(b, 0x90 | (unsigned char)n);
    else if (n < 0x10000) { put1(b, 0xdc); put_be(b, (unsigned long long)n, 2); }
    else { put1(b, 0xdd); put_be(b, (unsigned long long)n, 4); }
    return 0;
}

static int pack_long(Buf *b, PyObject *v) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) { PyErr_Clear(); return 1; }
    RESERVE(b, 9);
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); return 1; }
        put1(b, 0xcf); put_be(b, u, 8);
        return 0;
    }
    if (overflow < 0) return 1;
    if (x < 0) {
        if (x >= -32) put1(b, (unsigned char)(x & 0xff));
        else if (x >= -128) { put1(b, 0xd0); put_be(b, (unsigned long long)x, 1); }
        else if (x >= -32768) { put1(b, 0xd1); put_be(b, (unsigned long long)x, 2); }
        else if (x >= -2147483648LL) { put1(b, 0xd2); put_be(b, (unsigned long long)x, 4); }
        else { put1(b, 0xd3); put_be(b, (unsigned long long)x, 8); }
    } else {
        if (x < 128) put1(b, (unsigned char)x);
        else if (x < 256) { put1(b, 0xcc); put_be(b, (unsigned long long)x, 1); }
        else if (x < 65536) { put1(b, 0xcd); put_be(b, (unsigned long long)x, 2); }
        else if (x < 4294967296LL) { put1(b, 0xce); put_be(b, (unsigned long long)x, 4); }
        else { put1(b, 0xcf); put_be(b, (unsigned long long)x, 8); }
    }
    return 0;
}

static int pack_str(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) { PyErr_Clear(); return 1; } /* e.g. lone surrogates: the general path decides */
    RESERVE(b, n + 5);
    if (n < 32) put1(b, 0xa0 | (unsigned char)n);
    else if (n < 256) { put1(b, 0xd9); put_be(b, (unsigned long long)n, 1); }
    else if (n < 0x10000) { put1(b, 0xda); put_be(b, (unsigned long long)n, 2); }
    else if (n <= 0xffffffffLL) { put1(b, 0xdb); put_be(b, (unsigned long long)n, 4); }
    else return 1;
    memcpy(b->p + b->len, u, (size_t)n);
    b->len += n;
    return 0;
}

/* int or None: the span's times and ids */
static int pack_int_or_nil(Buf *b, PyObject *v) {
    if (v == Py_None) return pack_nil(b);
    if (!PyLong_Check(v) || PyBool_Check(v)) return 1;
    return pack_long(b, v);
}

/* A number attribute: bool, int or float (what sum() accepts among OTel attribute types). */
static int pack_number(Buf *b, PyObject *v) {
    if (PyBool_Check(v)) { RESERVE(b, 1); put1(b, v == Py_True ? 0xc3 : 0xc2); return 0; }
    if (PyLong_Check(v)) return pack_long(b, v);
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        unsigned long long bits;
        memcpy(&bits, &d, 8);
        RESERVE(b, 9);
        put1(b, 0xcb); put_be(b, bits, 8);
        return 0;
    }
    return 1;
}

static int pack_trace_id(Buf *b, PyObject *v) {
    unsigned char id[16];
    if (!PyLong_Check(v) || PyBool_Check(v)) return 1;
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t n = PyLong_AsNativeBytes(v, id, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER | Py_ASNATIVEBYTES_REJECT_NEGATIVE);
    if (n < 0) { PyErr_Clear(); return 1; }
    if (n > 16) return 1;
#else
    /* unsigned: a negative or a too-large id raises OverflowError -> not taken */
    if (_PyLong_AsByteArray((PyLongObject *)v, id, 16, 0, 0) < 0) { PyErr_Clear(); return 1; }
#endif
    RESERVE(b, 18);
    put1(b, 0xc4); put1(b, 16);
    memcpy(b->p + b->len, id, 16);
    b->len += 16;
    return 0;
}

/* ------------------------------------------------------------------ the Ender type */
typedef struct {
    PyObject_HEAD
    PyObject *plans;   /* SpanPlans._plans: (name, attribute count) -> plan tuple */
    PyObject *clean;   /* Redactor.clean_values (set) or None: no redaction */
    PyObject *pseudo;  /* Redactor.pseudonym_cache (dict) or None */
    PyObject *batches; /* the transport's ReadyBatches */
    PyObject *recs_append, *recs, *ready, *flush; /* its deques, recs.append, flush */
    PyObject *slow;    /* publisher's path for spans not taken (snapshot for the sender thread) */
    Py_ssize_t batch, max;
} Ender;

/* attribute read; NULL without an exception set if missing */
static PyObject *attr(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) PyErr_Clear();
    return v;
}

static int is_empty_bounded(PyObject *span, PyObject *name) {
    PyObject *lst = attr(span, name);
    if (lst == NULL) return 0;
    PyObject *dq = attr(lst, s_dq);
    Py_DECREF(lst);
    if (dq == NULL) return 0;
    Py_ssize_t n = PyObject_Length(dq);
    Py_DECREF(dq);
    if (n < 0) { PyErr_Clear(); return 0; }
    return n == 0;
}

/* The values of `keys` in `attrs`, packed as an array; kind 0 = known-clean strings, 1 = numbers,
 * 2 = pseudonyms from the cache. */
static int pack_values(Ender *self, Buf *b, PyObject *attrs, PyObject *keys, int kind) {
    if (!PyTuple_Check(keys)) return 1;
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    if (pack_array_header(b, n) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(attrs, PyTuple_GET_ITEM(keys, i));
        if (v == NULL) { PyErr_Clear(); return 1; }
        int rc;
        if (kind == 0) {
            if (!PyUnicode_Check(v)) return 1;
            if (self->clean != Py_None) {
                int in = PySet_Contains(self->clean, v);
                if (in <= 0) { PyErr_Clear(); return 1; }
            }
            rc = pack_str(b, v);
        } else if (kind == 1) {
            rc = pack_number(b, v);
        } else {
            PyObject *key;
            if (PyUnicode_Check(v)) { key = v; Py_INCREF(key); }
            else if (PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v)) {
                key = PyObject_Str(v);
                if (key == NULL) { PyErr_Clear(); return 1; }
            } else return 1;
            PyObject *p = PyDict_GetItemWithError(self->pseudo, key);
            Py_DECREF(key);
            if (p == NULL) { PyErr_Clear(); return 1; }
            if (!PyUnicode_Check(p)) return 1;
            rc = pack_str(b, p);
        }
        if (rc != 0) return rc;
    }
    return 0;
}

/* The record of `span` into `b`, and its plan's group (new reference) into *group. */
static int encode_span(Ender *self, PyObject *span, Buf *b, PyObject **group) {
    int rc = 1;
    PyObject *status = NULL, *o = NULL, *attrs = NULL, *name = NULL, *key = NULL, *plan = NULL,
             *ctx = NULL, *parent = NULL;
    status = attr(span, s_status);
    if (status == NULL) goto done;
    o = attr(status, s_description);
    if (o == NULL || (o != Py_None && PyObject_IsTrue(o) != 0)) goto done;
    Py_CLEAR(o);
    if (!is_empty_bounded(span, s_events) || !is_empty_bounded(span, s_links)) goto done;
    o = attr(span, s_attributes);
    if (o == NULL) goto done;
    attrs = attr(o, s_dict);
    Py_CLEAR(o);
    if (attrs == NULL || !PyDict_Check(attrs)) goto done;
    name = attr(span, s_name);
    if (name == NULL) goto done;
    o = PyLong_FromSsize_t(PyDict_GET_SIZE(attrs));
    if (o == NULL) { rc = -1; goto done; }
    key = PyTuple_Pack(2, name, o);
    Py_CLEAR(o);
    if (key == NULL) { rc = -1; goto done; }
    PyObject *plans = PyDict_GetItemWithError(self->plans, key);
    if (plans == NULL) { PyErr_Clear(); goto done; }
    if (!PyTuple_Check(plans)) goto done;
    /* The key's plan of this span's kind, status code, scope and resource, by identity as in
     * span_plans.end: (group, sget, nget, pget, kind, code, scope, resource, skeys, nkeys, pkeys) */
    static PyObject **members[4] = {&s_kind, &s_status_code, &s_scope, &s_resource};
    PyObject *mine[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) mine[i] = attr(i == 1 ? status : span, *members[i]);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(plans) && plan == NULL; j++) {
        PyObject *p = PyTuple_GET_ITEM(plans, j);
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != 11) continue;
        int same = 1;
        for (int i = 0; i < 4 && same; i++) same = mine[i] != NULL && PyTuple_GET_ITEM(p, 4 + i) == mine[i];
        if (same) { plan = p; Py_INCREF(plan); }
    }
    for (int i = 0; i < 4; i++) Py_XDECREF(mine[i]);
    if (plan == NULL) goto done;
    PyObject *grp = PyTuple_GET_ITEM(plan, 0); /* None: this shape takes the general path */
    if (!PyTuple_Check(grp) || PyTuple_GET_SIZE(grp) < 4) goto done;
    ctx = attr(span, s_context);
    if (ctx == NULL || !PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 2) goto done;
    parent = attr(span, s_parent);
    if (parent == NULL) goto done;
    if (pack_array_header(b, 9) < 0) { rc = -1; goto done; }
    if ((rc = pack_long(b, PyTuple_GET_ITEM(grp, 3))) != 0) goto done;
    if ((rc = pack_trace_id(b, PyTuple_GET_ITEM(ctx, 0))) != 0) goto done;
    if ((rc = pack_int_or_nil(b, PyTuple_GET_ITEM(ctx, 1))) != 0) goto done;
    if (parent == Py_None) rc = pack_nil(b);
    else if (PyTuple_Check(parent) && PyTuple_GET_SIZE(parent) >= 2) rc = pack_int_or_nil(b, PyTuple_GET_ITEM(parent, 1));
    else rc = 1;
    if (rc != 0) goto done;
    rc = 1;
    o = attr(span, s_start);
    if (o == NULL || (rc = pack_int_or_nil(b, o)) != 0) goto done;
    Py_CLEAR(o);
    rc = 1;
    o = attr(span, s_end);
    if (o == NULL || (rc = pack_int_or_nil(b, o)) != 0) goto done;
    Py_CLEAR(o);
    for (int kind = 0; kind < 3; kind++) {
        PyObject *keys = PyTuple_GET_ITEM(plan, 8 + kind);
        if (kind == 2 && PyTuple_Check(keys) && PyTuple_GET_SIZE(keys) > 0 && self->pseudo == Py_None) { rc = 1; goto done; }
        if ((rc = pack_values(self, b, attrs, keys, kind)) != 0) goto done;
    }
    *group = grp;
    Py_INCREF(grp);
    rc = 0;
done:
    Py_XDECREF(status); Py_XDECREF(o); Py_XDECREF(attrs); Py_XDECREF(name); Py_XDECREF(key);
    Py_XDECREF(plan); Py_XDECREF(ctx); Py_XDECREF(parent);
    return rc;
}

/* ReadyBatches.add for a (group, record bytes) entry: 1 taken, 0 full or closed, -1 error. */
static int add_entry(Ender *self, PyObject *entry) {
    PyObject *closed = attr(self->batches, s_closed);
    if (closed == NULL) return 0;
    int is_closed = PyObject_IsTrue(closed);
    Py_DECREF(closed);
    if (is_closed != 0) { PyErr_Clear(); return 0; }
    Py_ssize_t nrecs = PyObject_Length(self->recs), nready = PyObject_Length(self->ready);
    if (nrecs < 0 || nready < 0) { PyErr_Clear(); return 0; }
    if (nrecs + self->batch * nready >= self->max) return 0;
    if (nrecs == 0) {
        PyObject *now = PyObject_CallNoArgs(monotonic);
        if (now == NULL || PyObject_SetAttr(self->batches, s_since, now) < 0) { Py_XDECREF(now); PyErr_Clear(); return 0; }
        Py_DECREF(now);
    }
    PyObject *r = PyObject_CallOneArg(self->recs_append, entry);
    if (r == NULL) { PyErr_Clear(); return 0; }
    Py_DECREF(r);
    if (nrecs + 1 >= self->batch) {
        /* flush never raises (it counts what it cannot encode); the record is in either way */
        r = PyObject_CallNoArgs(self->flush);
        if (r == NULL) PyErr_Clear();
        Py_XDECREF(r);
    }
    return 1;
}

/* 1 taken, 0 not taken; never leaves an exception set */
static int take(Ender *self, PyObject *span) {
    if (self->plans == NULL) return 0; /* __init__ failed or was never called: take nothing */
    Buf b;
    PyObject *group = NULL;
    buf_init(&b);
    int rc = encode_span(self, span, &b, &group);
    int taken = 0;
    if (rc == 0) {
        PyObject *rec = PyBytes_FromStringAndSize(b.p, b.len);
        PyObject *entry = rec ? PyTuple_Pack(2, group, rec) : NULL;
        Py_XDECREF(rec);
        if (entry != NULL) {
            taken = add_entry(self, entry) == 1;
            Py_DECREF(entry);
        }
    }
    Py_XDECREF(group);
    buf_free(&b);
    if (PyErr_Occurred()) PyErr_Clear(); /* out of memory: the general path will count it */
    return taken;
}

static PyObject *Ender_end(Ender *self, PyObject *span) {
    return PyBool_FromLong(take(self, span));
}

static PyObject *Ender_on_end(Ender *self, PyObject *span) {
    if (take(self, span)) Py_RETURN_NONE;
    if (self->slow == NULL) { PyErr_SetString(PyExc_RuntimeError, "Ender not initialised"); return NULL; }
    return PyObject_CallOneArg(self->slow, span);
}

static int Ender_init(Ender *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"plans", "clean", "pseudo", "batches", "slow", NULL};
    PyObject *plans, *clean, *pseudo, *batches, *slow;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOO:Ender", kw, &PyDict_Type, &plans, &clean,
                                     &pseudo, &batches, &slow))
        return -1;
    if (clean != Py_None && !PySet_Check(clean)) { PyErr_SetString(PyExc_TypeError, "clean must be a set or None"); return -1; }
    if (pseudo != Py_None && !PyDict_Check(pseudo)) { PyErr_SetString(PyExc_TypeError, "pseudo must be a dict or None"); return -1; }
    PyObject *recs = PyObject_GetAttr(batches, s_recs), *ready = PyObject_GetAttr(batches, s_ready);
    PyObject *flush = PyObject_GetAttr(batches, s_flush);
    PyObject *append = recs ? PyObject_GetAttr(recs, s_append) : NULL;
    PyObject *nb = PyObject_GetAttr(batches, s_batch), *nm = PyObject_GetAttr(batches, s_max);
    Py_ssize_t batch = nb ? PyLong_AsSsize_t(nb) : -1, max = nm ? PyLong_AsSsize_t(nm) : -1;
    Py_XDECREF(nb); Py_XDECREF(nm);
    if (!recs || !ready || !flush || !append || batch < 1 || max < 1) {
        Py_XDECREF(recs); Py_XDECREF(ready); Py_XDECREF(flush); Py_XDECREF(append);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "batches lacks _recs/_ready/flush/_batch/_max");
        return -1;
    }
    Py_INCREF(plans); Py_INCREF(clean); Py_INCREF(pseudo); Py_INCREF(batches); Py_INCREF(slow);
    Py_XSETREF(self->plans, plans);
    Py_XSETREF(self->clean, clean);
    Py_XSETREF(self->pseudo, pseudo);
    Py_XSETREF(self->batches, batches);
    Py_XSETREF(self->slow, slow);
    Py_XSETREF(self->recs, recs);
    Py_XSETREF(self->ready, ready);
    Py_XSETREF(self->flush, flush);
    Py_XSETREF(self->recs_append, append);
    self->batch = batch;
    self->max = max;
    return 0;
}

static int Ender_traverse(Ender *self, visitproc visit, void *arg) {
    Py_VISIT(self->plans); Py_VISIT(self->clean); Py_VISIT(self->pseudo); Py_VISIT(self->batches);
    Py_VISIT(self->recs_append); Py_VISIT(self->recs); Py_VISIT(self->ready); Py_VISIT(self->flush);
    Py_VISIT(self->slow);
    return 0;
}

static int Ender_clear(Ender *self) {
    Py_CLEAR(self->plans); Py_CLEAR(self->clean); Py_CLEAR(self->pseudo); Py_CLEAR(self->batches);
    Py_CLEAR(self->recs_append); Py_CLEAR(self->recs); Py_CLEAR(self->ready); Py_CLEAR(self->flush);
    Py_CLEAR(self->slow);
    return 0;
}

static void Ender_dealloc(Ender *self) {
    PyObject_GC_UnTrack(self);
    Ender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Ender_methods[] = {
    {"end", (PyCFunction)Ender_end, METH_O,
     "end(span) -> bool: on the thread that ends the span; must not block or raise. True: the span's "
     "record is in the batches; False: not taken (the caller snapshots it)."},
    {"on_end", (PyCFunction)Ender_on_end, METH_O,
     "on_end(span): end(span), else slow(span). A SpanProcessor.on_end."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EnderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_telemetry.sdk._fastspan.Ender",
    .tp_basicsize = sizeof(Ender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Ender(plans, clean, pseudo, batches, slow): span_plans.SpanPlans.end in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ender_init,
    .tp_traverse = (traverseproc)Ender_traverse,
    .tp_clear = (inquiry)Ender_clear,
    .tp_dealloc = (destructor)Ender_dealloc,
    .tp_methods = Ender_methods,
};

/* ------------------------------------------------------------------ the Starter type */
/* Starter(var, tag).on_start(span, parent_context=None): tag(span) when the context variable
 * `var` holds a value (a session is active), else nothing. Runs on the thread that starts the
 * span: must not block or raise (tag never raises). A SpanProcessor.on_start without a frame. */
typedef struct {
    PyObject_HEAD
    PyObject *var, *tag;
} Starter;

static PyObject *Starter_on_start(Starter *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (nargs < 1 || n > 2 || self->var == NULL) {
        PyErr_SetString(PyExc_TypeError, "on_start(span, parent_context=None)");
        return NULL;
    }
    PyObject *val = NULL;
    if (PyContextVar_Get(self->var, Py_None, &val) < 0) { PyErr_Clear(); Py_RETURN_NONE; }
    if (val == NULL || val == Py_None) { Py_XDECREF(val); Py_RETURN_NONE; }
    Py_DECREF(val);
    return PyObject_CallOneArg(self->tag, args[0]);
}

static int Starter_init(Starter *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"var", "tag", NULL};
    PyObject *var, *tag;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O:Starter", kw, &PyContextVar_Type, &var, &tag)) return -1;
    Py_INCREF(var); Py_INCREF(tag);
    Py_XSETREF(self->var, var);
    Py_XSETREF(self->tag, tag);
    return 0;
}

static int Starter_traverse(Starter *self, visitproc visit, void *arg) { Py_VISIT(self->var); Py_VISIT(self->tag); return 0; }
static int Starter_clear(Starter *self) { Py_CLEAR(self->var); Py_CLEAR(self->tag); return 0; }
static void Starter_dealloc(Starter *self) {
    PyObject_GC_UnTrack(self);
    Starter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Starter_methods[] = {
    {"on_start", (PyCFunction)(void (*)(void))Starter_on_start, METH_FASTCALL | METH_KEYWORDS,
     "on_start(span, parent_context=None): tag(span) if the context variable is set."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StarterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otel_telemetry.sdk._fastspan.Starter",
    .tp_basicsize = sizeof(Starter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Starter(var, tag): a span processor's on_start that tags spans while var is set.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Starter_init,
    .tp_traverse = (traverseproc)Starter_traverse,
    .tp_clear = (inquiry)Starter_clear,
    .tp_dealloc = (destructor)Starter_dealloc,
    .tp_methods = Starter_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastspan", "The span fast path in C (see span_plans.py).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastspan(void) {
    struct { PyObject **p; const char *s; } names[] = {
        {&s_status, "_status"}, {&s_description, "_description"}, {&s_status_code, "_status_code"},
        {&s_events, "_events"}, {&s_links, "_links"}, {&s_dq, "_dq"}, {&s_attributes, "_attributes"},
        {&s_dict, "_dict"}, {&s_name, "_name"}, {&s_kind, "_kind"}, {&s_scope, "_instrumentation_scope"},
        {&s_resource, "_resource"}, {&s_context, "_context"}, {&s_parent, "_parent"},
        {&s_start, "_start_time"}, {&s_end, "_end_time"}, {&s_closed, "closed"}, {&s_since, "_since"},
        {&s_recs, "_recs"}, {&s_ready, "_ready"}, {&s_batch, "_batch"}, {&s_max, "_max"},
        {&s_flush, "flush"}, {&s_append, "append"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].p = PyUnicode_InternFromString(names[i].s);
        if (*names[i].p == NULL) return NULL;
    }
    PyObject *time = PyImport_ImportModule("time");
    if (time == NULL) return NULL;
    monotonic = PyObject_GetAttrString(time, "monotonic");
    Py_DECREF(time);
    if (monotonic == NULL) return NULL;
    if (PyType_Ready(&EnderType) < 0 || PyType_Ready(&StarterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddType(m, &EnderType) < 0 || PyModule_AddType(m, &StarterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
