/*
 * Seen: the containers a plain value was made of when its canonical encoding was
 * checked (seen_encoding) or made (encode_seen), each with what it held then.
 *
 * A large state value a step reads is handed to it as it is once the value is checked
 * to still encode to its recorded encoding, and checked again after the step (a change
 * in place is a hazard). Each check walked the whole value against the bytes (or
 * encoded it again): about what encoding it costs. A Seen answers the same question by
 * identity: Seen.same(value) is true when value is the very container seen, and every
 * container seen still holds what it held: a dict the same version tag (CPython 3.11
 * to 3.13 change it at every change of the dict) or, without one, the very same key
 * and value objects in the same order; a list the very same items. Every container in
 * the value is then one seen (each is held by one seen unchanged, down from the value
 * itself), and the scalars they hold (exact str, int, float, bool, None: all a plain
 * value holds) cannot change; no object seen can have been freed and its address taken
 * by another, since the Seen holds each container and each member it compares, and an
 * unchanged container holds the rest. So a value that is the same still encodes to the
 * Seen's encoding, byte for byte. Anything else (a change, or an equal value made of
 * other objects) answers false, and the caller checks the slow way, as before.
 *
 * A Wide is the same record for a step's wide outputs (a dict of many state keys, each
 * value small): the dict, the containers inside its values, and the dict of their
 * encodings cut from the one encoding of the whole (encode_wide in _speedups.c). While
 * all of those hold what they held, a state value that is the very object the dict held
 * under its key, beside the very encoding cut for it, still encodes to that encoding:
 * all_still_encode then skips walking it against its bytes.
 *
 * A Seen is not tracked by the cycle collector: it refers only to a plain value's
 * dicts, lists and scalars, which cannot refer to it (the engine keeps it beside the
 * state, where no step's value can reach), so it is never part of a cycle.
 */
#include "_seen.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *encoding;   /* bytes: the canonical encoding the objects were seen with */
    PyObject **objects;   /* the log's objects (see _seen.h), each a reference held */
    Py_ssize_t count;
    uint64_t *words;      /* two per container: how it was seen, its tag or size */
    Py_ssize_t word_count;
} SeenObject;

static PyTypeObject SeenType;

int seen_grow(SeenLog *log, int words, Py_ssize_t more)
{
    if (log->failed) {
        return -1;
    }
    Py_ssize_t used = words ? log->word_count : log->count;
    Py_ssize_t capacity = words ? log->word_capacity : log->capacity;
    Py_ssize_t wanted = capacity ? capacity * 2 : 256;
    if (more > PY_SSIZE_T_MAX / 16 - used) {
        log->failed = 1;
        return -1;
    }
    if (wanted < used + more) {
        wanted = used + more;
    }
    if (words) {
        uint64_t *grown = PyMem_Realloc(log->words, (size_t)wanted * sizeof *grown);
        if (grown == NULL) {
            log->failed = 1;
            return -1;
        }
        log->words = grown;
        log->word_capacity = wanted;
        return 0;
    }
    PyObject **grown = PyMem_Realloc(log->objects, (size_t)wanted * sizeof *grown);
    if (grown == NULL) {
        log->failed = 1;
        return -1;
    }
    log->objects = grown;
    log->capacity = wanted;
    return 0;
}

void seen_clear(SeenLog *log)
{
    for (Py_ssize_t index = 0; index < log->count; index++) {
        Py_DECREF(log->objects[index]);
    }
    PyMem_Free(log->objects);
    PyMem_Free(log->words);
    memset(log, 0, sizeof *log);
}

PyObject *seen_from_log(SeenLog *log, PyObject *encoding)
{
    if (log->failed || log->count == 0) {
        seen_clear(log);
        return PyErr_NoMemory();
    }
    SeenObject *self = PyObject_New(SeenObject, &SeenType);
    if (self == NULL) {
        seen_clear(log);
        return NULL;
    }
    Py_INCREF(encoding);
    self->encoding = encoding;
    self->objects = log->objects;
    self->count = log->count;
    self->words = log->words;
    self->word_count = log->word_count;
    memset(log, 0, sizeof *log);  /* the Seen holds the references now */
    return (PyObject *)self;
}

static void seen_dealloc(SeenObject *self)
{
    for (Py_ssize_t index = 0; index < self->count; index++) {
        Py_DECREF(self->objects[index]);
    }
    PyMem_Free(self->objects);
    PyMem_Free(self->words);
    Py_XDECREF(self->encoding);
    PyObject_Free(self);
}

/* Whether every container seen holds what it held (see the top of this file), value
 * being the first one seen. No Python code runs (tags and pointers are compared), so
 * the borrowed references stay valid. */
static int same_value(SeenObject *self, PyObject *value)
{
    PyObject **objects = self->objects;
    const uint64_t *words = self->words;
    Py_ssize_t count = self->count, at = 0, word = 0;
    if (count == 0 || objects[0] != value) {
        return 0;
    }
    while (at < count) {
        if (word + 2 > self->word_count) {
            return 0;
        }
        PyObject *container = objects[at++];
        uint64_t how = words[word], held = words[word + 1];
        word += 2;
        if (how == SEEN_BY_TAG) {
            if (seen_dict_tag(container) != held) {
                return 0;
            }
            continue;
        }
        Py_ssize_t size = (Py_ssize_t)held;
        if (how == SEEN_LIST) {
            if (PyList_GET_SIZE(container) != size || size > count - at) {
                return 0;
            }
            PyObject **items = ((PyListObject *)container)->ob_item;
            for (Py_ssize_t index = 0; index < size; index++) {
                if (items[index] != objects[at + index]) {
                    return 0;
                }
            }
            at += size;
            continue;
        }
        if (PyDict_GET_SIZE(container) != size || size > (count - at) / 2) {
            return 0;
        }
        Py_ssize_t position = 0;
        PyObject *key, *item;
        /* As many members as it holds (no Python code runs: it cannot change here). */
        for (Py_ssize_t left = size; left > 0; left--) {
            if (!PyDict_Next(container, &position, &key, &item) || objects[at] != key
                    || objects[at + 1] != item) {
                return 0;
            }
            at += 2;
        }
    }
    return word == self->word_count;
}

static PyObject *seen_same(SeenObject *self, PyObject *value)
{
    return PyBool_FromLong(same_value(self, value));
}

static PyObject *seen_get_encoding(SeenObject *self, void *closure)
{
    Py_INCREF(self->encoding);
    return self->encoding;
}

static PyObject *seen_repr(SeenObject *self)
{
    return PyUnicode_FromFormat("<Seen of %zd objects, %zd bytes encoded>", self->count,
                                PyBytes_GET_SIZE(self->encoding));
}

static PyMethodDef seen_methods[] = {
    {"same", (PyCFunction)seen_same, METH_O,
     "True when value is made of the very objects seen, in the same places: then it "
     "still encodes to encoding. False when it may not (the caller checks the slow way)."},
    {NULL},
};

static PyGetSetDef seen_getset[] = {
    {"encoding", (getter)seen_get_encoding, NULL,
     "The canonical encoding the value had when it was seen.", NULL},
    {NULL},
};

static PyTypeObject SeenType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinrun.artifacts._speedups.Seen",
    .tp_basicsize = sizeof(SeenObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The objects a plain value was made of when its canonical encoding was "
              "checked or made (made by seen_encoding and encode_seen only).",
    .tp_dealloc = (destructor)seen_dealloc,
    .tp_repr = (reprfunc)seen_repr,
    .tp_methods = seen_methods,
    .tp_getset = seen_getset,
};

/* A Wide: a Seen of a step's wide outputs (the dict first, then the containers inside
 * its values, then the dict of their encodings), and those two dicts. */
typedef struct {
    PyObject_HEAD
    SeenObject *seen;
    PyObject *outputs;    /* dict: state key -> value, as it was encoded */
    PyObject *encodings;  /* dict: state key -> its value's encoding */
} WideObject;

static PyTypeObject WideType;

PyObject *wide_from_log(SeenLog *log, PyObject *outputs, PyObject *encodings)
{
    if (log->count == 0 || log->objects[0] != outputs) {
        seen_clear(log);
        PyErr_SetString(PyExc_SystemError, "a Wide's log starts with its outputs");
        return NULL;
    }
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL) {
        seen_clear(log);
        return NULL;
    }
    PyObject *seen = seen_from_log(log, empty);  /* (no encoding of its own) */
    Py_DECREF(empty);
    if (seen == NULL) {
        return NULL;
    }
    WideObject *self = PyObject_New(WideObject, &WideType);
    if (self == NULL) {
        Py_DECREF(seen);
        return NULL;
    }
    self->seen = (SeenObject *)seen;
    self->outputs = Py_NewRef(outputs);
    self->encodings = Py_NewRef(encodings);
    return (PyObject *)self;
}

int wide_unchanged(PyObject *wide, PyObject **outputs, PyObject **encodings)
{
    if (Py_TYPE(wide) != &WideType) {
        return 0;
    }
    WideObject *self = (WideObject *)wide;
    /* The encodings dict is among the containers seen (the last), so it holds the very
     * encodings cut then. */
    if (!same_value(self->seen, self->outputs)) {
        return 0;
    }
    *outputs = self->outputs;
    *encodings = self->encodings;
    return 1;
}

static void wide_dealloc(WideObject *self)
{
    Py_XDECREF(self->seen);
    Py_XDECREF(self->outputs);
    Py_XDECREF(self->encodings);
    PyObject_Free(self);
}

static PyObject *wide_unchanged_method(WideObject *self, PyObject *unused)
{
    PyObject *outputs, *encodings;
    return PyBool_FromLong(wide_unchanged((PyObject *)self, &outputs, &encodings));
}

static PyObject *wide_repr(WideObject *self)
{
    return PyUnicode_FromFormat("<Wide of %zd keys, %zd objects>",
                                PyDict_GET_SIZE(self->outputs), self->seen->count);
}

static PyMethodDef wide_methods[] = {
    {"unchanged", (PyCFunction)wide_unchanged_method, METH_NOARGS,
     "True when the outputs, every container inside their values and the encodings "
     "dict hold what they held when the encodings were made."},
    {NULL},
};

static PyTypeObject WideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinrun.artifacts._speedups.Wide",
    .tp_basicsize = sizeof(WideObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The objects a step's wide outputs were made of when their encodings were "
              "made (made by encode_wide only).",
    .tp_dealloc = (destructor)wide_dealloc,
    .tp_repr = (reprfunc)wide_repr,
    .tp_methods = wide_methods,
};

static int add_type(PyObject *module, PyTypeObject *type, const char *name)
{
    if (PyType_Ready(type) < 0) {
        return -1;
    }
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

int add_seen(PyObject *module)
{
    return add_type(module, &SeenType, "Seen") < 0 ? -1 : add_type(module, &WideType, "Wide");
}
