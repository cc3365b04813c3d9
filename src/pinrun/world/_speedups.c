/*
 * Optional C speedups for the world's watches: the audit hook's gate, and two
 * reads that Python audits each time (code_state's walk makes many).
 *
 * address(obj) is id(obj) (the object's address), without the "builtins.id"
 * audit event; function_parts(func) is a function's (__globals__, __code__,
 * __defaults__, __kwdefaults__, __closure__, its __dict__ or None when it has
 * none yet), without the "object.__getattr__" events of the three in the
 * middle; object_bytes(obj, offset, size) a copy of the object's own memory there (the
 * random generator's state words). They read fields and call nothing.
 *
 * Walker (in _walk.c): code_state's walk, its common cases in C.
 *
 * The gate: the world's audit hook, in C, in front of the Python handler.
 *
 * Python calls every audit hook for every audit event in the process, and a
 * hook cannot be removed. Most events are of no interest to pinrun
 * ("builtins.id", "object.__getattr__" for a function's __code__ or
 * __defaults__, "marshal.loads", ...), but a hook written in Python makes each
 * of them a Python call: about 3,600 instructions where the event itself costs
 * about 100 without a hook, so that copy.deepcopy, which calls id() for every
 * object, runs 2.4 times slower in any process where pinrun watched the world.
 *
 * Gate(watched, others, handler) is that hook: called with (event, args), it
 * calls handler(event, args) only when the event is a key of one of the two
 * dicts (which the caller keeps and may only add to), and returns None at once
 * otherwise. The dicts hold only str keys the caller put there, so the look-up
 * runs no Python code of anyone else's.
 *
 * Before any look-up, a sieve: a bit per (first character, length) of the
 * watched names, made again whenever a dict's size changes. Most events fail
 * it, and cost no hashing of their name (Python makes a new str for each).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "_walk.h"

/* The sieve: a bit per (first character below 128, length modulo 64). */
#define SIEVE_CHARS 128
#define SIEVE_LENGTHS 64

typedef struct {
    PyObject_HEAD
    PyObject *watched;
    PyObject *others;
    PyObject *handler;
    vectorcallfunc vectorcall;
    /* The dicts' sizes the sieve was made for (-1: not made yet). */
    Py_ssize_t sieved_watched;
    Py_ssize_t sieved_others;
    /* A watched name starts with a character past the sieve: every event is looked up. */
    int open_sieve;
    uint64_t sieve[SIEVE_CHARS];
} Gate;

static void sieve_add(Gate *gate, PyObject *names)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(names, &position, &key, &value)) {
        if (!PyUnicode_Check(key) || PyUnicode_READY(key) < 0) {
            PyErr_Clear();
            gate->open_sieve = 1;  /* a name the sieve cannot place: look every event up */
            continue;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(key);
        Py_UCS4 first = length ? PyUnicode_READ_CHAR(key, 0) : 0;
        if (first >= SIEVE_CHARS) {
            gate->open_sieve = 1;
            continue;
        }
        gate->sieve[first] |= (uint64_t)1 << (length % SIEVE_LENGTHS);
    }
}

/* 0 when no watched name has the event's first character and length. */
static int sieve_passes(Gate *gate, PyObject *event)
{
    Py_ssize_t watched = PyDict_GET_SIZE(gate->watched);
    Py_ssize_t others = PyDict_GET_SIZE(gate->others);
    if (watched != gate->sieved_watched || others != gate->sieved_others) {
        memset(gate->sieve, 0, sizeof(gate->sieve));
        gate->open_sieve = 0;
        sieve_add(gate, gate->watched);
        sieve_add(gate, gate->others);
        gate->sieved_watched = watched;
        gate->sieved_others = others;
    }
    if (gate->open_sieve || PyUnicode_READY(event) < 0) {
        PyErr_Clear();
        return 1;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(event);
    Py_UCS4 first = length ? PyUnicode_READ_CHAR(event, 0) : 0;
    if (first >= SIEVE_CHARS) {
        return 0;  /* no watched name starts so */
    }
    return (gate->sieve[first] >> (length % SIEVE_LENGTHS)) & 1;
}

static PyObject *gate_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    Gate *gate = (Gate *)self;
    Py_ssize_t count = PyVectorcall_NARGS(nargsf);
    if (count != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Gate takes (event, args)");
        return NULL;
    }
    PyObject *event = args[0];
    if (PyUnicode_CheckExact(event)) {
        if (!sieve_passes(gate, event)) {
            Py_RETURN_NONE;
        }
        int found = PyDict_Contains(gate->watched, event);
        if (found == 0) {
            found = PyDict_Contains(gate->others, event);
        }
        if (found < 0) {
            return NULL;
        }
        if (found == 0) {
            Py_RETURN_NONE;
        }
    }
    /* Watched, or not a str (no event is): the handler decides. */
    return PyObject_Vectorcall(gate->handler, args, 2, NULL);
}

static PyObject *gate_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *watched, *others, *handler;
    static char *names[] = {"watched", "others", "handler", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O:Gate", names, &PyDict_Type,
                                     &watched, &PyDict_Type, &others, &handler)) {
        return NULL;
    }
    if (!PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_TypeError, "Gate's handler must be callable");
        return NULL;
    }
    Gate *gate = (Gate *)type->tp_alloc(type, 0);
    if (gate == NULL) {
        return NULL;
    }
    Py_INCREF(watched);
    Py_INCREF(others);
    Py_INCREF(handler);
    gate->watched = watched;
    gate->others = others;
    gate->handler = handler;
    gate->vectorcall = gate_vectorcall;
    gate->sieved_watched = -1;
    gate->sieved_others = -1;
    return (PyObject *)gate;
}

static int gate_traverse(Gate *gate, visitproc visit, void *arg)
{
    Py_VISIT(gate->watched);
    Py_VISIT(gate->others);
    Py_VISIT(gate->handler);
    return 0;
}

static int gate_clear(Gate *gate)
{
    Py_CLEAR(gate->watched);
    Py_CLEAR(gate->others);
    Py_CLEAR(gate->handler);
    return 0;
}

static void gate_dealloc(Gate *gate)
{
    PyObject_GC_UnTrack(gate);
    gate_clear(gate);
    Py_TYPE(gate)->tp_free((PyObject *)gate);
}

static PyObject *gate_reduce(PyObject *self, PyObject *unused)
{
    PyErr_SetString(PyExc_TypeError, "an audit gate cannot be pickled");
    return NULL;
}

static PyMemberDef gate_members[] = {
    {"watched", T_OBJECT, offsetof(Gate, watched), READONLY, NULL},
    {"others", T_OBJECT, offsetof(Gate, others), READONLY, NULL},
    {"handler", T_OBJECT, offsetof(Gate, handler), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef gate_methods[] = {
    {"__reduce__", gate_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinrun.world._speedups.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "An audit hook calling its handler only for the events named in its dicts.",
    .tp_new = gate_new,
    .tp_dealloc = (destructor)gate_dealloc,
    .tp_traverse = (traverseproc)gate_traverse,
    .tp_clear = (inquiry)gate_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Gate, vectorcall),
    .tp_methods = gate_methods,
    .tp_members = gate_members,
};

static PyObject *address(PyObject *module, PyObject *value)
{
    return PyLong_FromVoidPtr(value);
}

static PyObject *function_parts(PyObject *module, PyObject *value)
{
    if (!PyFunction_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "function_parts takes a function");
        return NULL;
    }
    PyFunctionObject *func = (PyFunctionObject *)value;
#define OR_NONE(field) ((field) != NULL ? (field) : Py_None)
    return PyTuple_Pack(6, func->func_globals, func->func_code, OR_NONE(func->func_defaults),
                        OR_NONE(func->func_kwdefaults), OR_NONE(func->func_closure),
                        OR_NONE(func->func_dict));
#undef OR_NONE
}

/* object_bytes(obj, offset, size): a copy of the object's own memory at [offset, offset +
 * size), which must lie within its type's basic size (past the object's head), obj an
 * instance of a class defined in Python with no per-item storage: what
 * ctypes.string_at(id(obj) + offset, size) reads, in a tenth of the instructions. */
static PyObject *object_bytes(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    Py_ssize_t offset, size;
    if (count != 3) {
        PyErr_SetString(PyExc_TypeError, "object_bytes takes (obj, offset, size)");
        return NULL;
    }
    if ((offset = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if ((size = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* Only an instance of a class defined in Python with no per-item storage is sure to
     * be allocated at its type's whole basic size (a short str, or a type object, is not:
     * its basic size runs past what it holds). */
    PyTypeObject *type = Py_TYPE(args[0]);
    Py_ssize_t within = type->tp_basicsize;
    if (!PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE) || type->tp_itemsize != 0 ||
            PyType_Check(args[0]) || offset < (Py_ssize_t)sizeof(PyObject) || size < 0 ||
            offset > within || size > within - offset) {
        PyErr_SetString(PyExc_ValueError, "object_bytes reads only within the object, "
                        "past its head");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)args[0] + offset, size);
}

/* all_hold(spaces, names, expected): whether spaces[i][names[i]] is expected[i] for
 * every i (a dict, or a class's mappingproxy, looked up without calling Python for a
 * dict): what the guards check at every replay, that the modules still hold the real
 * objects their stand-ins were built for. A missing name does not hold. */
static PyObject *all_hold(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])
            || !PyTuple_CheckExact(args[2]) || PyTuple_GET_SIZE(args[0]) != PyTuple_GET_SIZE(args[1])
            || PyTuple_GET_SIZE(args[0]) != PyTuple_GET_SIZE(args[2])) {
        PyErr_SetString(PyExc_TypeError, "all_hold() takes three tuples of one length");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *space = PyTuple_GET_ITEM(args[0], i), *name = PyTuple_GET_ITEM(args[1], i);
        PyObject *expected = PyTuple_GET_ITEM(args[2], i);
        int same;
        if (PyDict_CheckExact(space)) {
            PyObject *found = PyDict_GetItemWithError(space, name);  /* borrowed */
            if (found == NULL && PyErr_Occurred()) {
                return NULL;
            }
            same = found == expected;
        }
        else {
            PyObject *found = PyObject_GetItem(space, name);
            if (found == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                    return NULL;
                }
                PyErr_Clear();
            }
            same = found == expected;
            Py_XDECREF(found);
        }
        if (!same) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"all_hold", (PyCFunction)(void (*)(void))all_hold, METH_FASTCALL,
     "all_hold(spaces, names, expected): whether spaces[i][names[i]] is expected[i] for "
     "every i (a missing name does not hold)."},
    {"object_bytes", (PyCFunction)(void (*)(void))object_bytes, METH_FASTCALL,
     "object_bytes(obj, offset, size): the object's own memory at [offset, offset + size)."},
    {"address", address, METH_O, "id(value), without its audit event."},
    {"function_parts", function_parts, METH_O,
     "A function's (__globals__, __code__, __defaults__, __kwdefaults__, __closure__, "
     "__dict__ or None), without their audit events."},
    {"configure_walk", configure_walk, METH_VARARGS,
     "configure_walk(by_identity, import_machinery, flow, opaque_error, most_items, "
     "most_depth): code_state's tables, for Walker (see _walk.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pinrun.world._speedups",
    "Optional C speedups for the world's watches: the audit hook's gate, and unaudited reads.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (PyType_Ready(&GateType) < 0) {
        return NULL;
    }
    PyObject *made = PyModule_Create(&module);
    if (made == NULL) {
        return NULL;
    }
    Py_INCREF(&GateType);
    if (PyModule_AddObject(made, "Gate", (PyObject *)&GateType) < 0) {
        Py_DECREF(&GateType);
        Py_DECREF(made);
        return NULL;
    }
    if (add_walker(made) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}
