/*
 * code_state's walk, its common cases in C (see pinrun/world/code_state.py).
 *
 * Walker is the base of code_state's _CWalk: it keeps the walk's state (the
 * objects seen, the objects held, the project's namespaces, the items counted)
 * and does value(), same(), namespace() and pairs() exactly as the Python
 * _PyWalk does, item by item and in the same order, so that both walks give
 * equal answers (tests hold them to it). What a module holds most is handled
 * here: numbers, strings, bytes, None; the values compared by identity; lists,
 * tuples, sets, frozensets and dicts; the project's functions (their cells,
 * defaults and attributes); modules; pinrun's flows. Every other kind goes to
 * the Python method _composite(kind, value, depth), which walks on through
 * these same methods.
 *
 * A Python walk costs about 10,000 instructions per function of the project's
 * (a dozen Python calls); this one a few hundred. configure() is called once,
 * by code_state, with the Python tables, so that nothing is written twice.
 */
#include "_walk.h"

#include <structmember.h>

/* Set once by configure(): code_state's tables. */
static PyObject *by_identity;    /* frozenset: _IMMUTABLE | _FORMS (exact types) */
static PyObject *machinery;      /* frozenset: _IMPORT_MACHINERY */
static PyObject *flow_type;      /* pinrun's Flow: held by identity, once seen */
static PyObject *opaque_error;   /* _OpaqueError */
static Py_ssize_t most_items = -1;
static long most_depth;
static PyObject *str_is, *str_seen, *str_function, *str_module, *str_empty;
static PyObject *str_composite, *str_hex, *str_name, *str_dunder_dict;

typedef struct {
    PyObject_HEAD
    PyObject *seen;  /* dict: address -> order first met */
    PyObject *held;  /* list: the objects compared by identity, and every one walked */
    PyObject *own;   /* set: the addresses of the project's namespaces */
    Py_ssize_t items;
} Walker;

static PyObject *walk_value(Walker *walk, PyObject *value, long depth);
static PyObject *function_state(Walker *walk, PyFunctionObject *func, PyObject *closure,
                                PyObject *code_object, PyObject *held_defaults,
                                PyObject *held_keywords, PyObject *held_dict, long depth);

/* ("is", address), holding value. */
static PyObject *walk_same(Walker *walk, PyObject *value)
{
    if (PyList_Append(walk->held, value) < 0) {
        return NULL;
    }
    PyObject *address = PyLong_FromVoidPtr(value);
    if (address == NULL) {
        return NULL;
    }
    PyObject *found = PyTuple_Pack(2, str_is, address);
    Py_DECREF(address);
    return found;
}

/* (walked key, walked value) of one (key, value) pair. */
static PyObject *walk_pair(Walker *walk, PyObject *pair, long depth)
{
    PyObject *key = NULL, *item = NULL, *walked = NULL;
    PyObject *parts = PySequence_Tuple(pair);
    if (parts != NULL && PyTuple_GET_SIZE(parts) != 2) {
        PyErr_SetString(PyExc_ValueError, "pairs takes (key, value) pairs");
    } else if (parts != NULL && (key = walk_value(walk, PyTuple_GET_ITEM(parts, 0), depth))
               != NULL && (item = walk_value(walk, PyTuple_GET_ITEM(parts, 1), depth))
               != NULL) {
        walked = PyTuple_Pack(2, key, item);
    }
    Py_XDECREF(parts);
    Py_XDECREF(key);
    Py_XDECREF(item);
    return walked;
}

/* A tuple of one(walk, item, depth) for each item of any iterable (a list, a set: in
 * its iteration order). */
static PyObject *walk_each(Walker *walk, PyObject *items, long depth,
                           PyObject *(*one)(Walker *, PyObject *, long))
{
    PyObject *found = PyList_New(0);
    PyObject *iterator = found != NULL ? PyObject_GetIter(items) : NULL;
    if (iterator == NULL) {
        Py_XDECREF(found);
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        PyObject *walked = one(walk, item, depth);
        Py_DECREF(item);
        if (walked == NULL || PyList_Append(found, walked) < 0) {
            Py_XDECREF(walked);
            Py_DECREF(iterator);
            Py_DECREF(found);
            return NULL;
        }
        Py_DECREF(walked);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        Py_DECREF(found);
        return NULL;
    }
    PyObject *tuple = PyList_AsTuple(found);
    Py_DECREF(found);
    return tuple;
}

/* A tuple of the walked items of any iterable. */
static PyObject *walk_items(Walker *walk, PyObject *items, long depth)
{
    return walk_each(walk, items, depth, walk_value);
}

/* ((walked key, walked value), ...) of an iterable of pairs. */
static PyObject *walk_pairs(Walker *walk, PyObject *items, long depth)
{
    return walk_each(walk, items, depth, walk_pair);
}

static PyObject *walk_namespace(Walker *walk, PyObject *names, long depth)
{
    PyObject *items = PyMapping_Items(names);  /* list(names.items()) */
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    PyObject *found = PyTuple_New(count);
    for (Py_ssize_t index = 0; found != NULL && index < count; index++) {
        PyObject *pair = PySequence_Tuple(PyList_GET_ITEM(items, index));
        if (pair != NULL && PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_ValueError, "a namespace's items are pairs");
            Py_CLEAR(pair);
        }
        if (pair == NULL) {
            Py_CLEAR(found);
            break;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        PyTypeObject *kind = Py_TYPE(value);
        PyObject *entry = NULL;
        if (kind == &PyUnicode_Type || kind == &PyLong_Type || kind == &PyBool_Type) {
            walk->items++;  /* most globals: kept as they are */
            entry = PyTuple_Pack(3, name, (PyObject *)kind, value);
        } else {
            int held = PySet_Contains(machinery, name);
            PyObject *walked = held < 0 ? NULL : held ? walk_same(walk, value)
                               : walk_value(walk, value, depth);
            if (walked != NULL) {
                entry = PyTuple_Pack(2, name, walked);
                Py_DECREF(walked);
            }
        }
        Py_DECREF(pair);
        if (entry == NULL) {
            Py_CLEAR(found);
            break;
        }
        PyTuple_SET_ITEM(found, index, entry);
    }
    Py_DECREF(items);
    return found;
}

/* 1 when func is another module's (home = sys.modules.get(str(globals.get("__name__"))),
 * and vars(home) is its globals), 0 when not, -1 on error. Holds what it reads: the
 * lookups and vars(home) can run code that takes them out of sys.modules. */
static int foreign_function(Walker *walk, PyObject *globals)
{
    PyObject *address = PyLong_FromVoidPtr(globals);
    int own = address != NULL ? PySet_Contains(walk->own, address) : -1;
    Py_XDECREF(address);
    if (own != 0) {
        return own < 0 ? -1 : 0;
    }
    PyObject *name = Py_XNewRef(PyDict_GetItemWithError(globals, str_name));  /* exact dict */
    if (name == NULL && PyErr_Occurred()) {
        return -1;
    }
    PyObject *text = PyObject_Str(name != NULL ? name : Py_None);
    Py_XDECREF(name);
    if (text == NULL) {
        return -1;
    }
    PyObject *home = Py_XNewRef(PyDict_GetItemWithError(PyImport_GetModuleDict(), text));
    Py_DECREF(text);
    if (home == NULL || home == Py_None) {  /* None: an import blocked on purpose */
        Py_XDECREF(home);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *namespace = PyObject_GetAttr(home, str_dunder_dict);  /* vars(home) */
    Py_DECREF(home);
    if (namespace == NULL) {
        return -1;
    }
    Py_DECREF(namespace);  /* (compared by address only) */
    return namespace == globals;
}

/* A function of the project's, as _PyWalk._function walks it (another module's: by
 * identity). Its parts are taken first, as the Python walk takes them, and held while
 * walked: nothing the walk runs may take them from under it. */
static PyObject *walk_function(Walker *walk, PyFunctionObject *func, long depth)
{
    PyObject *closure = Py_XNewRef(func->func_closure);
    PyObject *code_object = Py_NewRef(func->func_code);
    PyObject *held_defaults = Py_XNewRef(func->func_defaults);
    PyObject *held_keywords = Py_XNewRef(func->func_kwdefaults);
    PyObject *held_dict = Py_XNewRef(func->func_dict);
    PyObject *found = NULL;
    int foreign = foreign_function(walk, func->func_globals);
    if (foreign > 0) {
        found = walk_same(walk, (PyObject *)func);
    } else if (foreign == 0) {
        found = function_state(walk, func, closure, code_object, held_defaults,
                               held_keywords, held_dict, depth);
    }
    Py_XDECREF(closure);
    Py_DECREF(code_object);
    Py_XDECREF(held_defaults);
    Py_XDECREF(held_keywords);
    Py_XDECREF(held_dict);
    return found;
}

static PyObject *function_state(Walker *walk, PyFunctionObject *func, PyObject *closure,
                                PyObject *code_object, PyObject *held_defaults,
                                PyObject *held_keywords, PyObject *held_dict, long depth)
{
    Py_ssize_t count = closure != NULL && PyTuple_Check(closure) ? PyTuple_GET_SIZE(closure) : 0;
    PyObject *cells = PyTuple_New(count);
    if (cells == NULL) {
        return NULL;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *cell = PyTuple_GET_ITEM(closure, index);
        PyObject *contents = PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
        PyObject *walked;
        if (contents == NULL) {  /* an empty cell (a name assigned later) */
            walked = Py_NewRef(str_empty);
        } else {
            Py_INCREF(contents);
            walked = walk_value(walk, contents, depth);
            Py_DECREF(contents);
        }
        if (walked == NULL) {
            Py_DECREF(cells);
            return NULL;
        }
        PyTuple_SET_ITEM(cells, index, walked);
    }
    /* The name as it is now, after the cells (the Python walk reads func.__name__ there). */
    PyObject *name = Py_NewRef(func->func_name);
    PyObject *same = walk_same(walk, (PyObject *)func);
    PyObject *code = same != NULL ? walk_same(walk, code_object) : NULL;
    PyObject *defaults = NULL, *keywords = NULL, *attributes = NULL, *found = NULL;
    if (code != NULL) {
        defaults = held_defaults == NULL ? Py_NewRef(Py_None)
                   : walk_value(walk, held_defaults, depth);
    }
    if (defaults != NULL) {
        keywords = held_keywords == NULL ? Py_NewRef(Py_None)
                   : walk_value(walk, held_keywords, depth);
    }
    if (keywords != NULL) {
        int truth = held_dict != NULL ? PyObject_IsTrue(held_dict) : 0;
        attributes = truth < 0 ? NULL : truth ? walk_value(walk, held_dict, depth)
                     : Py_NewRef(Py_None);
    }
    if (attributes != NULL) {
        found = PyTuple_Pack(8, str_function, same, code, name, defaults, keywords, cells,
                             attributes);
    }
    Py_DECREF(cells);
    Py_DECREF(name);
    Py_XDECREF(same);
    Py_XDECREF(code);
    Py_XDECREF(defaults);
    Py_XDECREF(keywords);
    Py_XDECREF(attributes);
    return found;
}

/* A module as _PyWalk._composite walks it: the project's by name, a loaded one by identity. */
static PyObject *walk_module(Walker *walk, PyObject *module, long depth)
{
    PyObject *namespace = PyModule_GetDict(module);  /* borrowed: the module holds it */
    PyObject *address = PyLong_FromVoidPtr(namespace);
    int own = address != NULL ? PySet_Contains(walk->own, address) : -1;
    Py_XDECREF(address);
    PyObject *name = own >= 0 ? PyObject_GetAttr(module, str_name) : NULL;
    if (name == NULL) {
        return NULL;
    }
    PyObject *found = NULL;
    if (own) {
        found = PyTuple_Pack(2, str_module, name);
    } else {
        PyObject *loaded = PyDict_GetItemWithError(PyImport_GetModuleDict(), name);
        if (loaded == module) {
            found = walk_same(walk, module);
        } else if (!PyErr_Occurred()) {  /* made at run time: what it holds */
            PyObject *held = walk_namespace(walk, namespace, depth);
            if (held != NULL) {
                found = PyTuple_Pack(2, (PyObject *)Py_TYPE(module), held);
                Py_DECREF(held);
            }
        }
    }
    Py_DECREF(name);
    return found;
}

static PyObject *walk_value(Walker *walk, PyObject *value, long depth)
{
    walk->items++;
    if (walk->items > most_items || depth > most_depth) {
        PyErr_SetNone(opaque_error);
        return NULL;
    }
    PyTypeObject *kind = Py_TYPE(value);
    if (kind == &PyUnicode_Type || kind == &PyLong_Type || kind == &PyBool_Type ||
            kind == &PyBytes_Type || value == Py_None) {
        return PyTuple_Pack(2, (PyObject *)kind, value);
    }
    if (kind == &PyFloat_Type || kind == &PyComplex_Type) {
        PyObject *text = kind == &PyFloat_Type ? PyObject_CallMethodNoArgs(value, str_hex)
                         : PyObject_Repr(value);
        if (text == NULL) {
            return NULL;
        }
        PyObject *found = PyTuple_Pack(2, (PyObject *)kind, text);
        Py_DECREF(text);
        return found;
    }
    int identity = PySet_Contains(by_identity, (PyObject *)kind);
    if (identity) {
        return identity < 0 ? NULL : walk_same(walk, value);
    }
    PyObject *key = PyLong_FromVoidPtr(value);
    if (key == NULL) {
        return NULL;
    }
    PyObject *order = PyDict_GetItemWithError(walk->seen, key);
    if (order != NULL || PyErr_Occurred()) {  /* met before in this walk: a cycle, or shared */
        Py_DECREF(key);
        return order == NULL ? NULL : PyTuple_Pack(2, str_seen, order);
    }
    order = PyLong_FromSsize_t(PyDict_GET_SIZE(walk->seen));
    int failed = order == NULL || PyDict_SetItem(walk->seen, key, order) < 0 ||
                 PyList_Append(walk->held, value) < 0;
    Py_DECREF(key);
    Py_XDECREF(order);
    if (failed) {
        return NULL;
    }
    depth += 1;
    if (kind == &PyFunction_Type && PyDict_CheckExact(((PyFunctionObject *)value)->func_globals)) {
        return walk_function(walk, (PyFunctionObject *)value, depth);
    }
    if (kind == &PyList_Type || kind == &PyTuple_Type || kind == &PySet_Type ||
            kind == &PyFrozenSet_Type) {
        PyObject *items = walk_items(walk, value, depth);
        PyObject *found = items != NULL ? PyTuple_Pack(2, (PyObject *)kind, items) : NULL;
        Py_XDECREF(items);
        return found;
    }
    if (kind == &PyDict_Type) {
        PyObject *items = PyDict_Items(value);
        PyObject *pairs = items != NULL ? walk_pairs(walk, items, depth) : NULL;
        Py_XDECREF(items);
        PyObject *found = pairs != NULL ? PyTuple_Pack(2, (PyObject *)kind, pairs) : NULL;
        Py_XDECREF(pairs);
        return found;
    }
    if (kind == &PyModule_Type) {
        return walk_module(walk, value, depth);
    }
    if ((PyObject *)kind == flow_type) {
        return walk_same(walk, value);
    }
    PyObject *at = PyLong_FromLong(depth);
    if (at == NULL) {
        return NULL;
    }
    PyObject *arguments[] = {(PyObject *)walk, (PyObject *)kind, value, at};
    PyObject *found = PyObject_VectorcallMethod(str_composite, arguments, 4, NULL);
    Py_DECREF(at);
    return found;
}

static int ready(Walker *walk)
{
    if (most_items < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the walk is not configured");
        return 0;
    }
    if (walk->seen == NULL || !PyDict_CheckExact(walk->seen) || walk->held == NULL ||
            !PyList_CheckExact(walk->held) || walk->own == NULL || !PySet_Check(walk->own)) {
        PyErr_SetString(PyExc_TypeError, "a walk's seen, held and own are a dict, a list "
                        "and a set");
        return 0;
    }
    return 1;
}

/* The (what, depth) arguments of a walk's method, once the walk is ready: 1, or 0 with an
 * exception (``usage`` names them for a TypeError). */
static int walk_arguments(Walker *walk, PyObject *const *args, Py_ssize_t count,
                          const char *usage, long *depth)
{
    if (count != 2 || !ready(walk) || ((*depth = PyLong_AsLong(args[1])) == -1
                                       && PyErr_Occurred())) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, usage);
        }
        return 0;
    }
    return 1;
}

static PyObject *walker_value(Walker *walk, PyObject *const *args, Py_ssize_t count)
{
    long depth;
    return walk_arguments(walk, args, count, "value takes (value, depth)", &depth)
           ? walk_value(walk, args[0], depth) : NULL;
}

static PyObject *walker_same(Walker *walk, PyObject *value)
{
    return ready(walk) ? walk_same(walk, value) : NULL;
}

static PyObject *walker_namespace(Walker *walk, PyObject *const *args, Py_ssize_t count)
{
    long depth;
    return walk_arguments(walk, args, count, "namespace takes (names, depth)", &depth)
           ? walk_namespace(walk, args[0], depth) : NULL;
}

static PyObject *walker_pairs(Walker *walk, PyObject *const *args, Py_ssize_t count)
{
    long depth;
    return walk_arguments(walk, args, count, "pairs takes (items, depth)", &depth)
           ? walk_pairs(walk, args[0], depth) : NULL;
}

static int walker_traverse(Walker *walk, visitproc visit, void *arg)
{
    Py_VISIT(walk->seen);
    Py_VISIT(walk->held);
    Py_VISIT(walk->own);
    return 0;
}

static int walker_clear(Walker *walk)
{
    Py_CLEAR(walk->seen);
    Py_CLEAR(walk->held);
    Py_CLEAR(walk->own);
    return 0;
}

static void walker_dealloc(Walker *walk)
{
    PyObject_GC_UnTrack(walk);
    walker_clear(walk);
    Py_TYPE(walk)->tp_free((PyObject *)walk);
}

static PyObject *walker_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Walker *walk = (Walker *)type->tp_alloc(type, 0);
    if (walk == NULL) {
        return NULL;
    }
    walk->seen = PyDict_New();
    walk->held = PyList_New(0);
    walk->own = PySet_New(NULL);
    if (walk->seen == NULL || walk->held == NULL || walk->own == NULL) {
        Py_DECREF(walk);
        return NULL;
    }
    return (PyObject *)walk;
}

static PyMemberDef walker_members[] = {
    /* Read-only: code the walk runs could otherwise take them away mid-walk. */
    {"seen", T_OBJECT_EX, offsetof(Walker, seen), READONLY, NULL},
    {"held", T_OBJECT_EX, offsetof(Walker, held), READONLY, NULL},
    {"own", T_OBJECT_EX, offsetof(Walker, own), READONLY, NULL},
    {"items", T_PYSSIZET, offsetof(Walker, items), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef walker_methods[] = {
    {"value", (PyCFunction)(void (*)(void))walker_value, METH_FASTCALL, NULL},
    {"same", (PyCFunction)walker_same, METH_O, NULL},
    {"namespace", (PyCFunction)(void (*)(void))walker_namespace, METH_FASTCALL, NULL},
    {"pairs", (PyCFunction)(void (*)(void))walker_pairs, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinrun.world._speedups.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "code_state's walk: its common cases in C (the rest in _composite).",
    .tp_new = walker_new,
    .tp_dealloc = (destructor)walker_dealloc,
    .tp_traverse = (traverseproc)walker_traverse,
    .tp_clear = (inquiry)walker_clear,
    .tp_methods = walker_methods,
    .tp_members = walker_members,
};

PyObject *configure_walk(PyObject *module, PyObject *args)
{
    PyObject *identity, *import_machinery, *flow, *error;
    Py_ssize_t items;
    long depth;
    if (!PyArg_ParseTuple(args, "O!O!OOnl:configure", &PyFrozenSet_Type, &identity,
                          &PyFrozenSet_Type, &import_machinery, &flow, &error, &items,
                          &depth)) {
        return NULL;
    }
    if (!PyType_Check(flow) || !PyExceptionClass_Check(error) || items < 0 || depth < 0) {
        PyErr_SetString(PyExc_TypeError, "configure takes (frozenset, frozenset, type, "
                        "exception class, most items, most depth)");
        return NULL;
    }
    Py_XSETREF(by_identity, Py_NewRef(identity));
    Py_XSETREF(machinery, Py_NewRef(import_machinery));
    Py_XSETREF(flow_type, Py_NewRef(flow));
    Py_XSETREF(opaque_error, Py_NewRef(error));
    most_items = items;
    most_depth = depth;
    Py_RETURN_NONE;
}

int add_walker(PyObject *module)
{
    static const char *words[] = {"is", "seen", "function", "module", "empty", "_composite",
                                  "hex", "__name__", "__dict__"};
    PyObject **places[] = {&str_is, &str_seen, &str_function, &str_module, &str_empty,
                           &str_composite, &str_hex, &str_name, &str_dunder_dict};
    for (size_t index = 0; index < sizeof(words) / sizeof(words[0]); index++) {
        *places[index] = PyUnicode_InternFromString(words[index]);
        if (*places[index] == NULL) {
            return -1;
        }
    }
    if (PyType_Ready(&WalkerType) < 0) {
        return -1;
    }
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(module, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        return -1;
    }
    return 0;
}
