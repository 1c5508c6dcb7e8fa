/* OTLP ExportTraceServiceRequest (protobuf wire format) -> the span batches of otlp/decode.py, in C.
 *
 * Optional: decode.py (the upb runtime plus _map_request/_span/_any) is the reference and the
 * fallback when this module is not built or OTEL_TELEMETRY_SPEEDUPS=0. The upb path creates a
 * Python wrapper per KeyValue/AnyValue access; here the wire bytes are read once and only the
 * values the records hold become Python objects.
 *
 * decode_traces(body) -> ([(resource_attrs, records, start, end), ...], rejected, first_message)
 * where body[start:end] are the bytes of that ResourceSpans as received (decode.py hashes them
 * into uid_base). Malformed input raises ValueError (decode.py answers OtlpDecodeError / 400).
 *
 * It accepts and rejects what upb accepts and rejects, because the same body must give the same
 * outcome whichever decoder runs:
 *   - a field whose wire type does not match its declaration is an unknown field, skipped;
 *   - a known singular message seen twice is merged (a status, resource or scope in two parts,
 *     an AnyValue set twice: a different oneof member replaces, arrays/kvlists concatenate);
 *   - every proto3 string field, used or not, must be valid UTF-8;
 *   - nesting (messages and unknown groups) deeper than 100 levels is an error, as in upb;
 *   - tags of more than 5 bytes or above 2^32-1, field number 0 (outside groups), varints of
 *     more than 10 bytes, wire types 6/7, lengths beyond the enclosing message are errors.
 * Every read is checked against the end of the enclosing message first.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 100 /* upb's default depth limit (the request itself is depth 0) */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* A position in a message: [p, end) is what is left of it. */
typedef struct {
    const uint8_t *p, *end;
} Rd;

/* One field as read: its number and wire type, and its value (varint/fixed) or payload (LEN). */
typedef struct {
    uint32_t num;
    int wt;
    uint64_t u;
    const uint8_t *data;
    Py_ssize_t len;
} Field;

static int fail(const char *msg) {
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

static inline int read_varint(Rd *r, uint64_t *out) {
    if (r->p < r->end && !(*r->p & 0x80)) { /* one byte: most tags, lengths and small ints */
        *out = *r->p++;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return fail("truncated varint");
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i); /* bits past 64 are dropped, as upb does */
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return fail("varint longer than 10 bytes");
}

static inline int read_tag(Rd *r, uint32_t *tag) {
    const uint8_t *start = r->p;
    uint64_t v;
    if (read_varint(r, &v) < 0) return -1;
    if (r->p - start > 5 || v > UINT32_MAX) return fail("bad field tag");
    *tag = (uint32_t)v;
    return 0;
}

static int skip_group(Rd *r, uint32_t num, int depth);

/* The value of a field whose tag was read: the varint or fixed value, or the LEN payload. */
static inline int read_value(Rd *r, Field *f, int depth) {
    switch (f->wt) {
    case WT_VARINT:
        return read_varint(r, &f->u);
    case WT_I64:
    case WT_I32: {
        int n = f->wt == WT_I64 ? 8 : 4;
        if (r->end - r->p < n) return fail("truncated fixed-size field");
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | r->p[i]; /* little endian */
        f->u = v;
        r->p += n;
        return 0;
    }
    case WT_LEN: {
        uint64_t n;
        if (read_varint(r, &n) < 0) return -1;
        if (n > (uint64_t)(r->end - r->p)) return fail("length beyond the end of its message");
        f->data = r->p;
        f->len = (Py_ssize_t)n;
        r->p += n;
        return 0;
    }
    case WT_SGROUP: /* no field of a trace request is a group: always unknown, skipped */
        return skip_group(r, f->num, depth + 1);
    case WT_EGROUP:
        return fail("end of a group that was not started");
    default:
        return fail("invalid wire type");
    }
}

/* An unknown group at `depth`: its fields up to the matching end tag (upb lets field 0 by here). */
static int skip_group(Rd *r, uint32_t num, int depth) {
    if (depth > MAX_DEPTH) return fail("nested too deeply");
    for (;;) {
        if (r->p >= r->end) return fail("unterminated group");
        uint32_t tag;
        if (read_tag(r, &tag) < 0) return -1;
        Field f = {tag >> 3, (int)(tag & 7), 0, NULL, 0};
        if (f.wt == WT_EGROUP) return f.num == num ? 0 : fail("mismatched end of group");
        if (read_value(r, &f, depth) < 0) return -1;
    }
}

/* The next field of a message at `depth`: 1 read, 0 at its end, -1 error. */
static inline int next_field(Rd *r, Field *f, int depth) {
    if (r->p >= r->end) return 0;
    uint32_t tag;
    if (read_tag(r, &tag) < 0) return -1;
    f->num = tag >> 3;
    f->wt = (int)(tag & 7);
    if (f->num == 0) return fail("field number 0");
    return read_value(r, f, depth) < 0 ? -1 : 1;
}

#define IS(f, n, w) ((f).num == (n) && (f).wt == (w))
/* for each field of a message: returns -1 from the caller on malformed input */
#define FIELDS(r, f, depth) for (int rc_; (rc_ = next_field(&(r), &(f), (depth))) != 0;) if (rc_ < 0) return -1; else
/* the start of a message's parser: the depth limit, then a reader over its bytes */
#define ENTER(data, len, depth) \
    if ((depth) > MAX_DEPTH) return fail("nested too deeply"); \
    Rd r = {(data), (data) + (len)}; \
    Field f

/* A proto3 string: must be UTF-8 (PyUnicode_DecodeUTF8 is as strict as upb: no surrogates, no
 * overlong forms). UnicodeDecodeError is a ValueError, so a caller sees a malformed body. */
static PyObject *str_of(const Field *f) {
    return PyUnicode_DecodeUTF8((const char *)f->data, f->len, NULL);
}

/* Replace *slot by a new string (a field seen again: the last one wins). */
static int set_str(PyObject **slot, const Field *f) {
    PyObject *s = str_of(f);
    if (s == NULL) return -1;
    Py_XSETREF(*slot, s);
    return 0;
}

/* Attribute keys repeat from span to span: a small cache of their str objects saves decoding each
 * again and, as a str keeps its hash, hashing it again for the dict. Short ASCII keys only, so it
 * holds at most KEY_CACHE * 64 bytes; everything runs under the GIL. */
#define KEY_CACHE 512
static PyObject *key_cache[KEY_CACHE];

static PyObject *key_of(const Field *f) {
    if (f->len == 0 || f->len > 64) return str_of(f);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < f->len; i++) {
        if (f->data[i] & 0x80) return str_of(f);
        h = (h ^ f->data[i]) * 16777619u;
    }
    PyObject **slot = &key_cache[h % KEY_CACHE], *k = *slot;
    if (k != NULL && PyUnicode_GET_LENGTH(k) == f->len && memcmp(PyUnicode_1BYTE_DATA(k), f->data, f->len) == 0)
        return Py_NewRef(k);
    if ((k = str_of(f)) != NULL) Py_XSETREF(*slot, Py_NewRef(k)); /* ASCII: a compact 1-byte str */
    return k;
}

/* A string field nobody reads (trace_state, schema_url, ...): still checked, as upb does. */
static int check_str(const Field *f) {
    for (Py_ssize_t i = 0; i < f->len; i++) {
        if (f->data[i] & 0x80) {
            PyObject *s = str_of(f);
            if (s == NULL) return -1;
            Py_DECREF(s);
            return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ AnyValue, KeyValue */
enum { V_NONE, V_SCALAR, V_ARRAY, V_KVLIST };

/* An AnyValue being read, possibly over several parts (merge): its value and which kind. */
typedef struct {
    int kind;
    PyObject *val;
} Any;

static int parse_any(const uint8_t *data, Py_ssize_t len, int depth, Any *a);

static int parse_kv(const uint8_t *data, Py_ssize_t len, int depth, PyObject *dict) {
    ENTER(data, len, depth);
    PyObject *key = NULL;
    Any a = {V_NONE, NULL};
    int ok = -1;
    for (;;) {
        int rc = next_field(&r, &f, depth);
        if (rc < 0) goto done;
        if (rc == 0) break;
        if (IS(f, 1, WT_LEN)) {
            PyObject *k = key_of(&f);
            if (k == NULL) goto done;
            Py_XSETREF(key, k);
        } else if (IS(f, 2, WT_LEN)) {
            if (parse_any(f.data, f.len, depth + 1, &a) < 0) goto done;
        }
    }
    if (key == NULL && (key = PyUnicode_New(0, 0)) == NULL) goto done;
    ok = PyDict_SetItem(dict, key, a.val ? a.val : Py_None); /* duplicate keys: last wins, as _attrs */
done:
    Py_XDECREF(key);
    Py_XDECREF(a.val);
    return ok;
}

/* repeated KeyValue at field `num` of a message (attributes, kvlist values) into `dict`. */
static int parse_kvs(const uint8_t *data, Py_ssize_t len, int depth, uint32_t num, PyObject *dict) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        if (IS(f, num, WT_LEN) && parse_kv(f.data, f.len, depth + 1, dict) < 0) return -1;
    }
    return 0;
}

static int parse_array(const uint8_t *data, Py_ssize_t len, int depth, PyObject *list) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        if (!IS(f, 1, WT_LEN)) continue;
        Any e = {V_NONE, NULL};
        if (parse_any(f.data, f.len, depth + 1, &e) < 0) {
            Py_XDECREF(e.val);
            return -1;
        }
        int rc = PyList_Append(list, e.val ? e.val : Py_None);
        Py_XDECREF(e.val);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *hex_of(const Field *f) {
    static const char digits[] = "0123456789abcdef";
    PyObject *s = PyUnicode_New(2 * f->len, 127);
    if (s == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t i = 0; i < f->len; i++) {
        out[2 * i] = (Py_UCS1)digits[f->data[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[f->data[i] & 15];
    }
    return s;
}

static int set_any(Any *a, int kind, PyObject *v) {
    if (v == NULL) return -1;
    Py_XSETREF(a->val, v);
    a->kind = kind;
    return 0;
}

/* One part of an AnyValue into `a` (the mapping of decode._any). */
static int parse_any(const uint8_t *data, Py_ssize_t len, int depth, Any *a) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        int rc = 0;
        if (IS(f, 1, WT_LEN)) rc = set_any(a, V_SCALAR, str_of(&f));
        else if (IS(f, 2, WT_VARINT)) rc = set_any(a, V_SCALAR, PyBool_FromLong(f.u != 0));
        else if (IS(f, 3, WT_VARINT)) rc = set_any(a, V_SCALAR, PyLong_FromLongLong((int64_t)f.u));
        else if (IS(f, 4, WT_I64)) {
            double d;
            memcpy(&d, &f.u, sizeof d);
            rc = set_any(a, V_SCALAR, PyFloat_FromDouble(d));
        } else if (IS(f, 5, WT_LEN)) {
            /* the same member again merges into it; another member replaces it */
            if (a->kind != V_ARRAY) rc = set_any(a, V_ARRAY, PyList_New(0));
            if (rc == 0) rc = parse_array(f.data, f.len, depth + 1, a->val);
        } else if (IS(f, 6, WT_LEN)) {
            if (a->kind != V_KVLIST) rc = set_any(a, V_KVLIST, PyDict_New());
            if (rc == 0) rc = parse_kvs(f.data, f.len, depth + 1, 1, a->val);
        } else if (IS(f, 7, WT_LEN)) rc = set_any(a, V_SCALAR, hex_of(&f));
        else if (IS(f, 8, WT_VARINT)) /* string_value_strindex (profiles), int32 as _any gives it */
            rc = set_any(a, V_SCALAR, PyLong_FromLong((int32_t)(uint32_t)f.u));
        if (rc < 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ spans */
static PyObject *bytes_of(const uint8_t *p, Py_ssize_t n) {
    return PyBytes_FromStringAndSize((const char *)p, n);
}

/* Event -> (name, time_unix_nano, attributes) */
static PyObject *parse_event(const uint8_t *data, Py_ssize_t len, int depth) {
    if (depth > MAX_DEPTH) return fail("nested too deeply"), NULL;
    Rd r = {data, data + len};
    Field f;
    PyObject *name = NULL, *attrs = PyDict_New();
    uint64_t t = 0;
    int rc;
    if (attrs == NULL) return NULL;
    while ((rc = next_field(&r, &f, depth)) > 0) {
        if (IS(f, 1, WT_I64)) t = f.u;
        else if (IS(f, 2, WT_LEN)) rc = set_str(&name, &f);
        else if (IS(f, 3, WT_LEN)) rc = parse_kv(f.data, f.len, depth + 1, attrs);
        if (rc < 0) break;
    }
    PyObject *out = NULL;
    if (rc == 0 && (name != NULL || (name = PyUnicode_New(0, 0)) != NULL))
        out = Py_BuildValue("(OKO)", name, (unsigned long long)t, attrs);
    Py_XDECREF(name);
    Py_DECREF(attrs);
    return out;
}

/* Link -> (trace_id, span_id, attributes); the id lengths are checked with the span's. */
static PyObject *parse_link(const uint8_t *data, Py_ssize_t len, int depth) {
    if (depth > MAX_DEPTH) return fail("nested too deeply"), NULL;
    Rd r = {data, data + len};
    Field f, tid = {0}, sid = {0};
    PyObject *attrs = PyDict_New();
    int rc;
    if (attrs == NULL) return NULL;
    while ((rc = next_field(&r, &f, depth)) > 0) {
        if (IS(f, 1, WT_LEN)) tid = f;
        else if (IS(f, 2, WT_LEN)) sid = f;
        else if (IS(f, 3, WT_LEN)) rc = check_str(&f);
        else if (IS(f, 4, WT_LEN)) rc = parse_kv(f.data, f.len, depth + 1, attrs);
        if (rc < 0) break;
    }
    PyObject *out = NULL;
    if (rc == 0) out = Py_BuildValue("(y#y#O)", tid.data ? (const char *)tid.data : "", tid.len,
                                     sid.data ? (const char *)sid.data : "", sid.len, attrs);
    Py_DECREF(attrs);
    return out;
}

static int parse_status(const uint8_t *data, Py_ssize_t len, int depth, int32_t *code, PyObject **msg) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        if (IS(f, 3, WT_VARINT)) *code = (int32_t)(uint32_t)f.u;
        else if (IS(f, 2, WT_LEN) && set_str(msg, &f) < 0) return -1;
    }
    return 0;
}

/* Where the first rejected span of a request is described (decode._Acc). */
typedef struct {
    Py_ssize_t rejected, ri, si, i;
    PyObject *first;
} Acc;

/* 0: the id is 0 or `size` bytes; 1: the span is rejected (counted, first one described). */
static int bad_id(Acc *acc, Py_ssize_t n, Py_ssize_t size, const char *what) {
    if (n == 0 || n == size) return 0;
    acc->rejected++;
    if (acc->first == NULL) {
        acc->first = PyUnicode_FromFormat("resource_spans[%zd].scope_spans[%zd].spans[%zd]: "
                                          "%s has %zd bytes, expected %zd",
                                          acc->ri, acc->si, acc->i, what, n, size);
        if (acc->first == NULL) return -1;
    }
    return 1;
}

/* One Span (decode._span): appended to `out` unless one of its ids is rejected. */
static int parse_span(const uint8_t *data, Py_ssize_t len, int depth, PyObject *scope, Acc *acc,
                      PyObject *out) {
    if (depth > MAX_DEPTH) return fail("nested too deeply");
    Rd r = {data, data + len};
    Field f, tid = {0}, sid = {0}, pid = {0};
    PyObject *name = NULL, *msg = NULL, *attrs = PyDict_New(), *events = PyList_New(0),
             *links = PyList_New(0), *item, *span = NULL;
    uint64_t start = 0, end = 0;
    int32_t kind = 0, code = 0;
    int rc = -1;
    if (attrs == NULL || events == NULL || links == NULL) goto done;
    while ((rc = next_field(&r, &f, depth)) > 0) {
        rc = 0;
        if (IS(f, 1, WT_LEN)) tid = f;
        else if (IS(f, 2, WT_LEN)) sid = f;
        else if (IS(f, 3, WT_LEN)) rc = check_str(&f);
        else if (IS(f, 4, WT_LEN)) pid = f;
        else if (IS(f, 5, WT_LEN)) rc = set_str(&name, &f);
        else if (IS(f, 6, WT_VARINT)) kind = (int32_t)(uint32_t)f.u;
        else if (IS(f, 7, WT_I64)) start = f.u;
        else if (IS(f, 8, WT_I64)) end = f.u;
        else if (IS(f, 9, WT_LEN)) rc = parse_kv(f.data, f.len, depth + 1, attrs);
        else if (IS(f, 11, WT_LEN) || IS(f, 13, WT_LEN)) {
            item = f.num == 11 ? parse_event(f.data, f.len, depth + 1) : parse_link(f.data, f.len, depth + 1);
            rc = item == NULL ? -1 : PyList_Append(f.num == 11 ? events : links, item);
            Py_XDECREF(item);
        } else if (IS(f, 15, WT_LEN)) rc = parse_status(f.data, f.len, depth + 1, &code, &msg);
        if (rc < 0) goto done;
    }
    if (rc < 0) goto done;
    /* decode._span's checks, in its order: the first failing one names the rejection */
    rc = bad_id(acc, tid.len, 16, "trace_id");
    if (rc == 0) rc = bad_id(acc, sid.len, 8, "span_id");
    if (rc == 0) rc = bad_id(acc, pid.len, 8, "parent_span_id");
    for (Py_ssize_t j = 0; rc == 0 && j < PyList_GET_SIZE(links); j++) {
        PyObject *lk = PyList_GET_ITEM(links, j);
        rc = bad_id(acc, PyBytes_GET_SIZE(PyTuple_GET_ITEM(lk, 0)), 16, "link trace_id");
        if (rc == 0) rc = bad_id(acc, PyBytes_GET_SIZE(PyTuple_GET_ITEM(lk, 1)), 8, "link span_id");
    }
    if (rc != 0) goto done; /* rejected (1) or out of memory (-1) */
    static const int kinds[] = {0, 0, 1, 2, 3, 4}; /* decode._KIND; unknown kinds -> internal */
    int has_msg = msg != NULL && PyUnicode_GET_LENGTH(msg) > 0;
    PyObject *vals[14] = {
        name ? Py_NewRef(name) : PyUnicode_New(0, 0),
        bytes_of(tid.data, tid.len),
        bytes_of(sid.data, sid.len),
        pid.len ? bytes_of(pid.data, pid.len) : Py_NewRef(Py_None),
        PyLong_FromUnsignedLongLong(start),
        PyLong_FromUnsignedLongLong(end),
        PyLong_FromLong(kind >= 0 && kind <= 5 ? kinds[kind] : 0),
        PyLong_FromLong(code >= 0 && code <= 2 ? code : 0),
        Py_NewRef(has_msg ? msg : Py_None),
        Py_NewRef(attrs), Py_NewRef(events), Py_NewRef(links),
        Py_NewRef(PyTuple_GET_ITEM(scope, 0)), Py_NewRef(PyTuple_GET_ITEM(scope, 1)),
    };
    span = PyTuple_New(14);
    for (int k = 0; k < 14; k++) {
        if (span != NULL && vals[k] != NULL) PyTuple_SET_ITEM(span, k, vals[k]);
        else {
            Py_XDECREF(vals[k]);
            Py_CLEAR(span); /* a NULL item above: out of memory */
            for (int m = k + 1; m < 14; m++) Py_XDECREF(vals[m]);
            break;
        }
    }
    rc = span == NULL ? -1 : PyList_Append(out, span);
    Py_XDECREF(span);
done:
    Py_XDECREF(name);
    Py_XDECREF(msg);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    Py_XDECREF(links);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ scopes, resources, request */
static int parse_entity_ref(const uint8_t *data, Py_ssize_t len, int depth) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        if (f.num >= 1 && f.num <= 4 && f.wt == WT_LEN && check_str(&f) < 0) return -1;
    }
    return 0;
}

/* InstrumentationScope parts into (name, version); its attributes are checked, not kept. */
static int parse_scope(const uint8_t *data, Py_ssize_t len, int depth, PyObject **name, PyObject **version,
                       PyObject *scratch) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        int rc = 0;
        if (IS(f, 1, WT_LEN)) rc = set_str(name, &f);
        else if (IS(f, 2, WT_LEN)) rc = set_str(version, &f);
        else if (IS(f, 3, WT_LEN)) rc = parse_kv(f.data, f.len, depth + 1, scratch);
        if (rc < 0) return -1;
    }
    return 0;
}

static PyObject *or_none(PyObject *s) { /* `x or None` of decode.py, for a str or NULL */
    return s != NULL && PyUnicode_GET_LENGTH(s) > 0 ? Py_NewRef(s) : Py_NewRef(Py_None);
}

/* ScopeSpans: the scope first (it may come after the spans on the wire), then the spans. */
static int parse_scope_spans(const uint8_t *data, Py_ssize_t len, int depth, Acc *acc, PyObject *out) {
    ENTER(data, len, depth);
    PyObject *name = NULL, *version = NULL, *scope = NULL, *scratch = PyDict_New();
    int rc = scratch == NULL ? -1 : 0;
    while (rc == 0 && (rc = next_field(&r, &f, depth)) > 0) {
        rc = IS(f, 1, WT_LEN) ? parse_scope(f.data, f.len, depth + 1, &name, &version, scratch) : 0;
    }
    if (rc == 0) scope = Py_BuildValue("(NN)", or_none(name), or_none(version));
    rc = scope == NULL ? -1 : 0;
    r.p = data;
    acc->i = 0;
    while (rc == 0 && (rc = next_field(&r, &f, depth)) > 0) {
        rc = 0;
        if (IS(f, 2, WT_LEN)) {
            rc = parse_span(f.data, f.len, depth + 1, scope, acc, out);
            acc->i++;
        } else if (IS(f, 3, WT_LEN)) rc = check_str(&f);
    }
    Py_XDECREF(name);
    Py_XDECREF(version);
    Py_XDECREF(scope);
    Py_XDECREF(scratch);
    return rc;
}

static int parse_resource(const uint8_t *data, Py_ssize_t len, int depth, PyObject *attrs) {
    ENTER(data, len, depth);
    FIELDS(r, f, depth) {
        if (IS(f, 1, WT_LEN) && parse_kv(f.data, f.len, depth + 1, attrs) < 0) return -1;
        if (IS(f, 3, WT_LEN) && parse_entity_ref(f.data, f.len, depth + 1) < 0) return -1;
    }
    return 0;
}

/* ResourceSpans -> (resource attributes, records, start, end) */
static PyObject *parse_resource_spans(const Field *rf, const uint8_t *body, Acc *acc) {
    int depth = 1;
    Rd r = {rf->data, rf->data + rf->len};
    Field f;
    PyObject *attrs = PyDict_New(), *records = PyList_New(0), *out = NULL;
    int rc = attrs == NULL || records == NULL ? -1 : 0;
    acc->si = 0;
    while (rc == 0 && (rc = next_field(&r, &f, depth)) > 0) {
        rc = 0;
        if (IS(f, 1, WT_LEN)) rc = parse_resource(f.data, f.len, depth + 1, attrs);
        else if (IS(f, 2, WT_LEN)) {
            rc = parse_scope_spans(f.data, f.len, depth + 1, acc, records);
            acc->si++;
        } else if (IS(f, 3, WT_LEN)) rc = check_str(&f);
    }
    if (rc == 0) out = Py_BuildValue("(OOnn)", attrs, records, (Py_ssize_t)(rf->data - body),
                                     (Py_ssize_t)(rf->data + rf->len - body));
    Py_XDECREF(attrs);
    Py_XDECREF(records);
    return out;
}

static PyObject *decode_traces(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *body = view.buf;
    Rd r = {body, body + view.len};
    Field f;
    Acc acc = {0, 0, 0, 0, NULL};
    PyObject *batches = PyList_New(0), *out = NULL;
    int rc = batches == NULL ? -1 : 0;
    while (rc == 0 && (rc = next_field(&r, &f, 0)) > 0) {
        rc = 0;
        if (IS(f, 1, WT_LEN)) {
            PyObject *batch = parse_resource_spans(&f, body, &acc);
            rc = batch == NULL ? -1 : PyList_Append(batches, batch);
            Py_XDECREF(batch);
            acc.ri++;
        }
    }
    /* Only unknown fields: garbage that happens to parse (decode._decode_pb says the same). */
    if (rc == 0 && view.len > 0 && acc.ri == 0) rc = fail("no resource_spans");
    if (rc == 0) out = Py_BuildValue("(OnO)", batches, acc.rejected, acc.first ? acc.first : Py_None);
    Py_XDECREF(batches);
    Py_XDECREF(acc.first);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_traces", decode_traces, METH_O,
     "decode_traces(body) -> ([(resource_attrs, records, start, end), ...], rejected, first_message)\n\n"
     "body[start:end] is that ResourceSpans as received. Raises ValueError on a malformed body."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_fastotlp", .m_size = -1, .m_methods = methods,
    .m_doc = "OTLP trace request decoder in C (see otlp/decode.py).",
};

PyMODINIT_FUNC PyInit__fastotlp(void) { return PyModule_Create(&module); }
