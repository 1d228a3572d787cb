/* The fast path of kharbranth's Python package: Manager.poll without ctypes.
 *
 * A Poller owns a reused kh_event array and calls kh_manager_poll through the function
 * address ctypes resolved in the already-loaded library, so this module links against no
 * particular libkharbranth.so. A batch becomes a list of Event objects: per data event one
 * Event (no GC header: it cannot be part of a cycle); the kind is a shared EventKind member
 * and the connection's name a cached, interned str.
 *
 * A text or binary payload is copied into a bytes object only when `data` is read, or at the
 * next poll for an event still referenced then (the library's memory stays valid until that
 * poll): an event dropped unread, or read only for its `size`, costs no copy. That is the
 * library's zero-copy lending made safe for Python: no event ever points at freed memory.
 *
 * Built by python/setup.py when a C compiler and Python.h are there; the package falls back
 * to its ctypes loop otherwise (kharbranth.SPEEDUPS says which one runs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* The layout of kh_event (include/kharbranth.h: 64 bytes in every version). Declared here
 * rather than included so the extension builds from the package's sources alone. */
typedef struct {
    uint32_t kind;
    uint32_t error;
    uint16_t close_code;
    uint16_t state;
    uint32_t attempts;
    const char *conn;
    const uint8_t *data;
    size_t len;
    uint64_t down_for_ns;
    uint64_t recv_mono_ns;
    uint64_t recv_wall_ns;
} kh_event;

_Static_assert(sizeof(kh_event) == 64, "kh_event is 64 bytes");

typedef uint32_t (*kh_poll_fn)(void *mgr, kh_event *events, size_t cap, int32_t timeout_ms,
                               size_t *n);

#define KIND_TEXT 2
#define KIND_BINARY 3
#define KIND_ERROR 7
#define KIND_STATE 8
/* Kinds up to this are mapped to EventKind members when the package knows them; later
 * libraries may add more, which are skipped. */
#define MAX_KIND 15
#define MAX_STATE 15

/* ---- Event ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *kind;
    PyObject *conn;
    PyObject *data; /* NULL while the payload is still lent (`raw`) */
    PyObject *error;
    unsigned short close_code;
    Py_ssize_t size;
    const char *raw; /* the library's payload, valid until the Poller's next poll */
    /* STATE events (NULL reads as None): the ConnState, its cause, the gap of a re-open. */
    PyObject *state;
    PyObject *reason;
    PyObject *down_for;
    PyObject *last_message_at;
    unsigned int attempts;
    /* Receive timestamps of a frame (0: none). */
    unsigned long long mono_ns, wall_ns;
} Event;

/* The payload as bytes, copied from the library's memory on first use. */
static PyObject *Event_payload(Event *self) {
    if (self->data == NULL) {
        if (self->raw == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "the event's payload was lost (out of memory)");
            return NULL;
        }
        self->data = PyBytes_FromStringAndSize(self->raw, self->size);
        if (self->data == NULL)
            return NULL;
        self->raw = NULL;
    }
    return self->data;
}

static void Event_dealloc(Event *self) {
    Py_XDECREF(self->kind);
    Py_XDECREF(self->conn);
    Py_XDECREF(self->data);
    Py_XDECREF(self->error);
    Py_XDECREF(self->state);
    Py_XDECREF(self->reason);
    Py_XDECREF(self->down_for);
    Py_XDECREF(self->last_message_at);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A Python None argument is kept as NULL, which the members read as None. */
static PyObject *or_null(PyObject *o) {
    if (o == NULL || o == Py_None)
        return NULL;
    Py_INCREF(o);
    return o;
}

static int ns_arg(PyObject *o, unsigned long long *out) {
    *out = 0;
    if (o == NULL || o == Py_None)
        return 0;
    *out = PyLong_AsUnsignedLongLong(o);
    return (*out == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *Event_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"kind", "conn", "data", "close_code", "error", "state", "attempts",
                            "down_for", "reason", "last_message_at", "recv_mono_ns",
                            "recv_wall_ns", NULL};
    PyObject *kind, *conn, *data, *error = Py_None, *state = NULL, *down_for = NULL;
    PyObject *reason = NULL, *last = NULL, *mono = NULL, *wall = NULL;
    unsigned short close_code = 0;
    unsigned int attempts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|HOOIOOOOO", names, &kind, &conn, &data,
                                     &close_code, &error, &state, &attempts, &down_for,
                                     &reason, &last, &mono, &wall))
        return NULL;
    unsigned long long mono_ns, wall_ns;
    if (ns_arg(mono, &mono_ns) < 0 || ns_arg(wall, &wall_ns) < 0)
        return NULL;
    Event *self = (Event *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(kind);
    Py_INCREF(conn);
    Py_INCREF(data);
    Py_INCREF(error);
    self->kind = kind;
    self->conn = conn;
    self->data = data;
    self->error = error;
    self->close_code = close_code;
    self->state = or_null(state);
    self->reason = or_null(reason);
    self->down_for = or_null(down_for);
    self->last_message_at = or_null(last);
    self->attempts = attempts;
    self->mono_ns = mono_ns;
    self->wall_ns = wall_ns;
    self->size = PyBytes_Check(data) ? PyBytes_GET_SIZE(data) : PyObject_Length(data);
    self->raw = NULL;
    if (self->size < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *ns_or_none(unsigned long long ns) {
    if (ns == 0)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(ns);
}

static PyObject *Event_mono(Event *self, void *closure) {
    (void)closure;
    return ns_or_none(self->mono_ns);
}

static PyObject *Event_wall(Event *self, void *closure) {
    (void)closure;
    return ns_or_none(self->wall_ns);
}

static PyObject *Event_data(Event *self, void *closure) {
    (void)closure;
    PyObject *d = Event_payload(self);
    Py_XINCREF(d);
    return d;
}

static PyObject *Event_text(Event *self, void *closure) {
    (void)closure;
    if (Event_payload(self) == NULL)
        return NULL;
    if (!PyBytes_Check(self->data)) {
        PyErr_SetString(PyExc_TypeError, "Event.data is not bytes");
        return NULL;
    }
    return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(self->data), PyBytes_GET_SIZE(self->data),
                                "strict");
}

static PyObject *Event_repr(Event *self) {
    if (Event_payload(self) == NULL)
        return NULL;
    PyObject *name = PyObject_GetAttrString(self->kind, "name");
    if (name == NULL)
        return NULL;
    PyObject *head = PySequence_GetSlice(self->data, 0, 40);
    if (head == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("Event(%S, %R, %R)", name, self->conn, head);
    Py_DECREF(name);
    Py_DECREF(head);
    return r;
}

static PyMemberDef Event_members[] = {
    {"kind", T_OBJECT, offsetof(Event, kind), READONLY, "The EventKind."},
    {"conn", T_OBJECT, offsetof(Event, conn), READONLY, "The connection's name (str)."},
    {"size", T_PYSSIZET, offsetof(Event, size), READONLY,
     "len(data), without copying the payload."},
    {"close_code", T_USHORT, offsetof(Event, close_code), READONLY,
     "For CLOSE the peer's close code, else 0."},
    {"error", T_OBJECT, offsetof(Event, error), READONLY,
     "For ERROR the KharbranthError subclass instance (not raised), else None."},
    {"state", T_OBJECT, offsetof(Event, state), READONLY,
     "For STATE the ConnState entered, else None."},
    {"reason", T_OBJECT, offsetof(Event, reason), READONLY,
     "For STATE the KharbranthError that caused the change (its message is data), or None."},
    {"attempts", T_UINT, offsetof(Event, attempts), READONLY,
     "For STATE on an open after a drop: connect attempts since the drop, else 0."},
    {"down_for", T_OBJECT, offsetof(Event, down_for), READONLY,
     "For STATE on an open after a drop: seconds the connection was down, else None."},
    {"last_message_at", T_OBJECT, offsetof(Event, last_message_at), READONLY,
     "For STATE on an open after a drop: time.time() seconds of the last data message "
     "before the drop, else None."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Event_getset[] = {
    {"data", (getter)Event_data, NULL,
     "bytes: the payload, the close reason or the error message.", NULL},
    {"text", (getter)Event_text, NULL,
     "`data` decoded as UTF-8 (text messages, close reasons and error messages are).", NULL},
    {"recv_mono_ns", (getter)Event_mono, NULL,
     "With receive timestamps: CLOCK_MONOTONIC nanoseconds of the read that completed the "
     "frame (time.monotonic_ns() clock), else None.", NULL},
    {"recv_wall_ns", (getter)Event_wall, NULL,
     "With receive timestamps: the same time on the time.time_ns() clock, else None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EventType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kharbranth._speedups.Event",
    .tp_basicsize = sizeof(Event),
    .tp_dealloc = (destructor)Event_dealloc,
    .tp_repr = (reprfunc)Event_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One event of a connection, copied out of the library: kind, conn, data, "
              "close_code, error (read-only).",
    .tp_members = Event_members,
    .tp_getset = Event_getset,
    .tp_new = Event_new,
};

/* ---- Poller --------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    kh_poll_fn poll;
    void *mgr;
    kh_event *events;
    size_t cap;
    int busy;
    PyObject *kinds[MAX_KIND + 1]; /* EventKind members by value; NULL for unknown values */
    PyObject *states[MAX_STATE + 1]; /* ConnState members by value */
    PyObject *make_error;          /* error_for(code, message) */
    PyObject *check;               /* raises the exception of a kh_result (with kh_last_error) */
    PyObject *names;               /* dict: name as bytes -> interned str */
    /* Events of the last poll whose payload is still lent (one reference each). */
    Event **lent;
    size_t lent_n, lent_cap;
    /* The last name seen: one connection's events come in runs, so most lookups end here
     * with a strcmp instead of a bytes object and a dict lookup. */
    char *last_raw;
    PyObject *last_name;
} Poller;

/* Before the library takes back the last poll's memory: events still referenced get their
 * payload copied, the others are let go. Returns -1 (MemoryError set) if a copy failed;
 * every event is settled either way. */
static int settle(Poller *self) {
    int rc = 0;
    for (size_t i = 0; i < self->lent_n; i++) {
        Event *ev = self->lent[i];
        if (ev->data == NULL && Py_REFCNT(ev) > 1 && Event_payload(ev) == NULL) {
            PyErr_Clear();
            rc = -1;
        }
        ev->raw = NULL;
        Py_DECREF(ev);
    }
    self->lent_n = 0;
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

static int Poller_traverse(Poller *self, visitproc visit, void *arg) {
    for (int i = 0; i <= MAX_KIND; i++)
        Py_VISIT(self->kinds[i]);
    for (int i = 0; i <= MAX_STATE; i++)
        Py_VISIT(self->states[i]);
    Py_VISIT(self->make_error);
    Py_VISIT(self->check);
    Py_VISIT(self->names);
    Py_VISIT(self->last_name);
    return 0;
}

static int Poller_clear(Poller *self) {
    for (int i = 0; i <= MAX_KIND; i++)
        Py_CLEAR(self->kinds[i]);
    for (int i = 0; i <= MAX_STATE; i++)
        Py_CLEAR(self->states[i]);
    Py_CLEAR(self->make_error);
    Py_CLEAR(self->check);
    Py_CLEAR(self->names);
    Py_CLEAR(self->last_name);
    return 0;
}

static void Poller_dealloc(Poller *self) {
    PyObject_GC_UnTrack(self);
    if (settle(self) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
    PyMem_Free(self->lent);
    Poller_clear(self);
    PyMem_Free(self->events);
    PyMem_Free(self->last_raw);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Fills table[v] with the members of the int enum `members` whose value v is in lo..=hi. */
static int by_value(PyObject *members, PyObject **table, long lo, long hi) {
    PyObject *it = PyObject_GetIter(members);
    if (it == NULL)
        return -1;
    PyObject *k;
    while ((k = PyIter_Next(it)) != NULL) {
        long v = PyLong_AsLong(k);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(k);
            Py_DECREF(it);
            return -1;
        }
        if (v >= lo && v <= hi) {
            Py_XSETREF(table[v], k);
        } else {
            Py_DECREF(k);
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static int Poller_init(Poller *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"poll_fn", "manager", "kinds", "make_error", "check", "states",
                            NULL};
    unsigned long long fn, mgr;
    PyObject *kinds, *make_error, *check, *states = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKOOO|O", names, &fn, &mgr, &kinds,
                                     &make_error, &check, &states))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise a Poller while it polls");
        return -1;
    }
    if (settle(self) < 0)
        return -1;
    if (fn == 0 || mgr == 0) {
        PyErr_SetString(PyExc_ValueError, "poll_fn and manager must not be NULL");
        return -1;
    }
    if (!PyCallable_Check(make_error) || !PyCallable_Check(check)) {
        PyErr_SetString(PyExc_TypeError, "make_error and check must be callable");
        return -1;
    }
    Poller_clear(self);
    if (by_value(kinds, self->kinds, 1, MAX_KIND) < 0)
        return -1;
    if (states != NULL && states != Py_None && by_value(states, self->states, 0, MAX_STATE) < 0)
        return -1;
    self->poll = (kh_poll_fn)(uintptr_t)fn;
    self->mgr = (void *)(uintptr_t)mgr;
    Py_INCREF(make_error);
    self->make_error = make_error;
    Py_INCREF(check);
    self->check = check;
    self->names = PyDict_New();
    return self->names ? 0 : -1;
}

/* The str for a connection's NUL-terminated name. Returns a new reference. */
static PyObject *conn_name(Poller *self, const char *raw) {
    if (raw == NULL)
        raw = "";
    if (self->last_name != NULL && self->last_raw != NULL && strcmp(self->last_raw, raw) == 0) {
        Py_INCREF(self->last_name);
        return self->last_name;
    }
    size_t len = strlen(raw);
    PyObject *key = PyBytes_FromStringAndSize(raw, (Py_ssize_t)len);
    if (key == NULL)
        return NULL;
    PyObject *name = PyDict_GetItemWithError(self->names, key);
    if (name != NULL) {
        Py_INCREF(name);
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    } else {
        name = PyUnicode_DecodeUTF8(raw, (Py_ssize_t)len, "replace");
        if (name == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyUnicode_InternInPlace(&name);
        if (PyDict_SetItem(self->names, key, name) < 0) {
            Py_DECREF(key);
            Py_DECREF(name);
            return NULL;
        }
    }
    Py_DECREF(key);
    char *copy = PyMem_Realloc(self->last_raw, len + 1);
    if (copy != NULL) {
        memcpy(copy, raw, len + 1);
        self->last_raw = copy;
        Py_INCREF(name);
        Py_XSETREF(self->last_name, name);
    }
    return name;
}

/* The KharbranthError of an event's code and message (an ERROR or a STATE's reason). */
static PyObject *error_of(Poller *self, const kh_event *e) {
    PyObject *msg = PyUnicode_DecodeUTF8((const char *)e->data, (Py_ssize_t)e->len, "replace");
    if (msg == NULL)
        return NULL;
    PyObject *err = PyObject_CallFunction(self->make_error, "kO", (unsigned long)e->error, msg);
    Py_DECREF(msg);
    return err;
}

/* A STATE event's members (rare: made at once, not on first use). */
static int state_fields(Poller *self, const kh_event *e, Event *ev) {
    if (e->state <= MAX_STATE && self->states[e->state] != NULL) {
        Py_INCREF(self->states[e->state]);
        ev->state = self->states[e->state];
    } else {
        ev->state = PyLong_FromLong(e->state); /* a state from a later library */
        if (ev->state == NULL)
            return -1;
    }
    ev->attempts = e->attempts;
    if (e->down_for_ns) {
        ev->down_for = PyFloat_FromDouble((double)e->down_for_ns / 1e9);
        if (ev->down_for == NULL)
            return -1;
    }
    if (e->recv_wall_ns) {
        ev->last_message_at = PyFloat_FromDouble((double)e->recv_wall_ns / 1e9);
        if (ev->last_message_at == NULL)
            return -1;
    }
    if (e->error != 0) {
        ev->reason = error_of(self, e);
        if (ev->reason == NULL)
            return -1;
    }
    return 0;
}

static PyObject *make_event(Poller *self, const kh_event *e, PyObject *kind) {
    Event *ev = PyObject_New(Event, &EventType);
    if (ev == NULL)
        return NULL;
    ev->kind = NULL;
    ev->conn = NULL;
    ev->error = NULL;
    ev->data = NULL;
    ev->raw = NULL;
    ev->state = NULL;
    ev->reason = NULL;
    ev->down_for = NULL;
    ev->last_message_at = NULL;
    ev->attempts = 0;
    ev->mono_ns = 0;
    ev->wall_ns = 0;
    ev->size = (Py_ssize_t)e->len;
    ev->close_code = e->close_code;
    if (e->kind == KIND_TEXT || e->kind == KIND_BINARY) {
        if (self->lent_n == self->lent_cap) {
            size_t cap = self->lent_cap ? self->lent_cap * 2 : 256;
            Event **grown = PyMem_Realloc(self->lent, cap * sizeof(Event *));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            self->lent = grown;
            self->lent_cap = cap;
        }
        ev->raw = (const char *)e->data;
        Py_INCREF(ev);
        self->lent[self->lent_n++] = ev;
    } else {
        ev->data = PyBytes_FromStringAndSize((const char *)e->data, (Py_ssize_t)e->len);
        if (ev->data == NULL)
            goto fail;
    }
    ev->conn = conn_name(self, e->conn);
    if (ev->conn == NULL)
        goto fail;
    Py_INCREF(kind);
    ev->kind = kind;
    if (e->kind == KIND_STATE) {
        if (state_fields(self, e, ev) < 0)
            goto fail;
        Py_INCREF(Py_None);
        ev->error = Py_None;
    } else {
        ev->mono_ns = e->recv_mono_ns;
        ev->wall_ns = e->recv_wall_ns;
        if (e->kind == KIND_ERROR) {
            ev->error = error_of(self, e);
            if (ev->error == NULL)
                goto fail;
        } else {
            Py_INCREF(Py_None);
            ev->error = Py_None;
        }
    }
    return (PyObject *)ev;
fail:
    Py_DECREF(ev);
    return NULL;
}

PyDoc_STRVAR(Poller_poll_doc,
"poll(max_events, timeout_ms) -> list of Event\n\n"
"Calls kh_manager_poll (without the GIL) for up to max_events events, waiting up to\n"
"timeout_ms (-1: without end) for the first, and returns them as Events.");

static PyObject *Poller_poll(Poller *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "poll(max_events, timeout_ms)");
        return NULL;
    }
    Py_ssize_t max = PyLong_AsSsize_t(args[0]);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    long timeout = PyLong_AsLong(args[1]);
    if (timeout == -1 && PyErr_Occurred())
        return NULL;
    if (max < 1) {
        PyErr_SetString(PyExc_ValueError, "max_events must be at least 1");
        return NULL;
    }
    if (timeout < -1 || timeout > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "timeout_ms must be -1 or 0 to 2**31-1");
        return NULL;
    }
    if (self->mgr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the poller is detached (its manager is closed)");
        return NULL;
    }
    /* The array is reused and the library's pointers are valid only until the next poll:
     * two threads polling one manager at once would read each other's events. */
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "poll is running on another thread already");
        return NULL;
    }
    /* The poll below takes back the memory the last poll's payloads point into. */
    if (settle(self) < 0)
        return NULL;
    if ((size_t)max > self->cap) {
        kh_event *grown = PyMem_Realloc(self->events, (size_t)max * sizeof(kh_event));
        if (grown == NULL)
            return PyErr_NoMemory();
        self->events = grown;
        self->cap = (size_t)max;
    }
    size_t n = 0;
    uint32_t rc;
    kh_event *events = self->events;
    void *mgr = self->mgr;
    kh_poll_fn poll = self->poll;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = poll(mgr, events, (size_t)max, (int32_t)timeout, &n);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc != 0) {
        PyObject *r = PyObject_CallFunction(self->check, "k", (unsigned long)rc);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        PyErr_Format(PyExc_RuntimeError, "kh_manager_poll failed with code %lu",
                     (unsigned long)rc);
        return NULL;
    }
    if (n > (size_t)max)
        n = (size_t)max; /* defensive: never read past the array */
    /* Known kinds only (a later library may add some): counted first so the list is made
     * at its size, without a resize per event. */
    Py_ssize_t known = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = events[i].kind;
        known += (k <= MAX_KIND && self->kinds[k] != NULL);
    }
    PyObject *out = PyList_New(known);
    if (out == NULL)
        return NULL;
    Py_ssize_t j = 0;
    for (size_t i = 0; i < n; i++) {
        const kh_event *e = &events[i];
        if (e->kind > MAX_KIND || self->kinds[e->kind] == NULL)
            continue;
        PyObject *ev = make_event(self, e, self->kinds[e->kind]);
        if (ev == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, j++, ev);
    }
    return out;
}

static PyObject *Poller_detach(Poller *self, PyObject *unused) {
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot detach a Poller while it polls");
        return NULL;
    }
    /* The manager is freed next, and the payloads with it. */
    int rc = settle(self);
    self->mgr = NULL;
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Poller_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))Poller_poll, METH_FASTCALL, Poller_poll_doc},
    {"detach", (PyCFunction)Poller_detach, METH_NOARGS,
     "Forgets the manager (called before it is freed): a later poll raises."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Poller_members[] = {
    {"busy", T_INT, offsetof(Poller, busy), READONLY,
     "1 while a poll runs (on any thread), else 0."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PollerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kharbranth._speedups.Poller",
    .tp_basicsize = sizeof(Poller),
    .tp_dealloc = (destructor)Poller_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Poller(poll_fn, manager, kinds, make_error, check): kh_manager_poll into a "
              "reused array, events as Event objects.",
    .tp_traverse = (traverseproc)Poller_traverse,
    .tp_clear = (inquiry)Poller_clear,
    .tp_methods = Poller_methods,
    .tp_members = Poller_members,
    .tp_init = (initproc)Poller_init,
    .tp_new = PyType_GenericNew,
};


/* ---- the log bridge ------------------------------------------------------------------- */

/* kh_log_set_callback's callback runs on the library's threads. It never touches Python
 * (taking the GIL there could stall a connection's thread behind Python code, and at
 * interpreter exit PyGILState_Ensure ends the calling thread): it copies the record into a
 * bounded ring, which a Python daemon thread drains with log_wait into `logging`. When the
 * ring is full a record is counted, not queued, and log_wait reports the count. */

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define LOG_RING 4096

typedef struct {
    uint32_t level;
    char *target;
    char *message;
} log_rec;

static log_rec log_ring[LOG_RING];
static size_t log_head, log_count;
static unsigned long long log_dropped;
static int log_stopped;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cond = PTHREAD_COND_INITIALIZER;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void log_callback(void *user_data, uint32_t level, const char *target,
                         const char *message) {
    (void)user_data;
    char *t = dup_str(target ? target : "");
    char *m = dup_str(message ? message : "");
    pthread_mutex_lock(&log_lock);
    if (t == NULL || m == NULL || log_count == LOG_RING) {
        log_dropped++;
        pthread_mutex_unlock(&log_lock);
        free(t);
        free(m);
        return;
    }
    log_rec *r = &log_ring[(log_head + log_count) % LOG_RING];
    r->level = level;
    r->target = t;
    r->message = m;
    log_count++;
    pthread_cond_signal(&log_cond);
    pthread_mutex_unlock(&log_lock);
}

static PyObject *log_callback_address(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromVoidPtr((void *)(uintptr_t)&log_callback);
}

/* Up to this many records per call, so one call holds the GIL for a bounded time. */
#define LOG_BATCH 256

static PyObject *log_wait(PyObject *self, PyObject *arg) {
    (void)self;
    long timeout_ms = PyLong_AsLong(arg);
    if (timeout_ms == -1 && PyErr_Occurred())
        return NULL;
    if (timeout_ms < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout_ms must be at least 0");
        return NULL;
    }
    log_rec got[LOG_BATCH];
    size_t n = 0;
    unsigned long long dropped;
    int stopped;
    Py_BEGIN_ALLOW_THREADS
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&log_lock);
    while (log_count == 0 && log_dropped == 0 && !log_stopped) {
        if (pthread_cond_timedwait(&log_cond, &log_lock, &until) != 0)
            break;
    }
    while (n < LOG_BATCH && log_count > 0) {
        got[n++] = log_ring[log_head];
        log_head = (log_head + 1) % LOG_RING;
        log_count--;
    }
    dropped = log_dropped;
    log_dropped = 0;
    stopped = log_stopped && log_count == 0;
    pthread_mutex_unlock(&log_lock);
    Py_END_ALLOW_THREADS
    PyObject *list = PyList_New(0);
    for (size_t i = 0; i < n; i++) {
        if (list != NULL) {
            PyObject *rec = Py_BuildValue("(Iss)", (unsigned int)got[i].level, got[i].target,
                                          got[i].message);
            if (rec == NULL || PyList_Append(list, rec) < 0)
                Py_CLEAR(list);
            Py_XDECREF(rec);
        }
        free(got[i].target);
        free(got[i].message);
    }
    if (list == NULL)
        return NULL;
    return Py_BuildValue("(NKO)", list, dropped, stopped ? Py_True : Py_False);
}

static PyObject *log_stop(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    pthread_mutex_lock(&log_lock);
    log_stopped = 1;
    pthread_cond_broadcast(&log_cond);
    pthread_mutex_unlock(&log_lock);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"log_callback_address", log_callback_address, METH_NOARGS,
     "The address of the kh_log_callback that queues records for log_wait."},
    {"log_wait", log_wait, METH_O,
     "log_wait(timeout_ms) -> (records, dropped, stopped): waits (without the GIL) up to\n"
     "timeout_ms for log records; records are (level, target, message) tuples, dropped the\n"
     "number lost to a full queue since the last call, stopped True once log_stop was called\n"
     "and the queue is empty."},
    {"log_stop", log_stop, METH_NOARGS, "Ends log_wait's waiting (at interpreter exit)."},
    {NULL, NULL, 0, NULL},
};

/* ---- module --------------------------------------------------------------------------- */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kharbranth._speedups",
    .m_doc = "The C fast path of kharbranth.Manager.poll (see _speedups.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&EventType) < 0 || PyType_Ready(&PollerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EventType);
    if (PyModule_AddObject(m, "Event", (PyObject *)&EventType) < 0) {
        Py_DECREF(&EventType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&PollerType);
    if (PyModule_AddObject(m, "Poller", (PyObject *)&PollerType) < 0) {
        Py_DECREF(&PollerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
