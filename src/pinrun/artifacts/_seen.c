/*
 * Seen: the objects a plain value was made of when its canonical encoding was checked
 * (seen_encoding) or made (encode_seen), in the order of a walk, each held.
 *
 * A large state value a step reads is handed to it as it is once the value is checked
 * to still encode to its recorded encoding, and checked again after the step (a change
 * in place is a hazard). Each check walked the whole value against the bytes (or
 * encoded it again): about what encoding it costs. A Seen answers the same question by
 * identity: Seen.same(value) is true when value is made of the very objects it was
 * made of then, in the same places (every dict holds the same key and value objects in
 * the same order, every list the same items), which is one pointer comparison per
 * object. The scalars (exact str, int, float, bool, None: the only ones a plain value
 * holds) cannot change, and the Seen holds a reference to each, so none can be freed
 * and its address taken by another object; so a value that is the same is, to the
 * byte, what it was: it still encodes to the Seen's encoding. Anything else (a change,
 * or an equal value made of other objects) answers false, and the caller checks the
 * slow way, as before.
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
    PyObject **objects;   /* in walk order, each a reference held */
    Py_ssize_t count;
    Py_ssize_t *sizes;    /* each container's size, in walk order */
    Py_ssize_t size_count;
} SeenObject;

static PyTypeObject SeenType;

int seen_grow(SeenLog *log, int sizes, Py_ssize_t more)
{
    if (log->failed) {
        return -1;
    }
    Py_ssize_t used = sizes ? log->size_count : log->count;
    Py_ssize_t capacity = sizes ? log->size_capacity : log->capacity;
    Py_ssize_t wanted = capacity ? capacity * 2 : (sizes ? 64 : 256);
    if (more > PY_SSIZE_T_MAX / 16 - used) {
        log->failed = 1;
        return -1;
    }
    if (wanted < used + more) {
        wanted = used + more;
    }
    if (sizes) {
        Py_ssize_t *grown = PyMem_Realloc(log->sizes, (size_t)wanted * sizeof *grown);
        if (grown == NULL) {
            log->failed = 1;
            return -1;
        }
        log->sizes = grown;
        log->size_capacity = wanted;
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
    PyMem_Free(log->sizes);
    memset(log, 0, sizeof *log);
}

PyObject *seen_from_log(SeenLog *log, PyObject *encoding)
{
    if (log->failed) {
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
    self->sizes = log->sizes;
    self->size_count = log->size_count;
    memset(log, 0, sizeof *log);  /* the Seen holds the references now */
    return (PyObject *)self;
}

static void seen_dealloc(SeenObject *self)
{
    for (Py_ssize_t index = 0; index < self->count; index++) {
        Py_DECREF(self->objects[index]);
    }
    PyMem_Free(self->objects);
    PyMem_Free(self->sizes);
    Py_XDECREF(self->encoding);
    PyObject_Free(self);
}

/* Whether value is the object seen at *at and, for a container, holds what it held
 * then; *at and *sized advance past it. No Python code runs (pointers are compared),
 * so the borrowed references stay valid; the depth is the seen value's (a container is
 * entered only where one was seen, and the walk that saw it was bounded). */
static int same_item(SeenObject *self, PyObject *value, Py_ssize_t *at, Py_ssize_t *sized)
{
    PyObject **objects = self->objects;
    Py_ssize_t count = self->count, here = *at;
    if (here >= count || objects[here] != value) {
        return 0;
    }
    here++;
    PyTypeObject *type = Py_TYPE(value);
    if (type != &PyDict_Type && type != &PyList_Type) {
        *at = here;
        return 1;  /* a scalar: the very object, which cannot change */
    }
    Py_ssize_t size = type == &PyDict_Type ? PyDict_GET_SIZE(value) : PyList_GET_SIZE(value);
    if (*sized >= self->size_count || size != self->sizes[*sized]) {
        return 0;
    }
    (*sized)++;
    /* Each member: a dict's key and value (two objects), a list's item (one). */
    if (size > (count - here) / (type == &PyDict_Type ? 2 : 1)) {
        return 0;  /* (then every member below is within the objects) */
    }
    if (type == &PyList_Type) {
        for (Py_ssize_t index = 0; index < size; index++) {
            PyObject *item = PyList_GET_ITEM(value, index);
            PyTypeObject *inner = Py_TYPE(item);
            if (inner != &PyDict_Type && inner != &PyList_Type) {
                if (objects[here++] != item) {
                    return 0;
                }
                continue;
            }
            *at = here;
            if (!same_item(self, item, at, sized)) {
                return 0;
            }
            here = *at;
            if (size - index - 1 > count - here) {
                return 0;
            }
        }
        *at = here;
        return 1;
    }
    Py_ssize_t position = 0;
    PyObject *key, *item;
    /* As many members as it holds (it cannot change: no Python code runs), so the walk
     * ends without a last call to find there is no more. */
    for (Py_ssize_t left = size; left > 0; left--) {
        if (!PyDict_Next(value, &position, &key, &item) || objects[here] != key) {
            return 0;
        }
        PyTypeObject *inner = Py_TYPE(item);
        if (inner != &PyDict_Type && inner != &PyList_Type) {
            /* A scalar, compared here: most of a value's objects. */
            if (objects[here + 1] != item) {
                return 0;
            }
            here += 2;
            continue;
        }
        *at = here + 1;
        if (!same_item(self, item, at, sized)) {
            return 0;
        }
        here = *at;
        if (2 * (left - 1) > count - here) {
            return 0;
        }
    }
    *at = here;
    return 1;
}

static PyObject *seen_same(SeenObject *self, PyObject *value)
{
    Py_ssize_t at = 0, sized = 0;
    int same = same_item(self, value, &at, &sized) && at == self->count
        && sized == self->size_count;
    return PyBool_FromLong(same);
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

int add_seen(PyObject *module)
{
    if (PyType_Ready(&SeenType) < 0) {
        return -1;
    }
    Py_INCREF(&SeenType);
    if (PyModule_AddObject(module, "Seen", (PyObject *)&SeenType) < 0) {
        Py_DECREF(&SeenType);
        return -1;
    }
    return 0;
}
