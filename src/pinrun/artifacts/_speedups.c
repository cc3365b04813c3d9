/*
 * Optional C speedups for the canonical codec.
 *
 * plain(container) answers the question codec._plain answers in Python: does
 * this dict or list hold only values that orjson writes losslessly (str, int,
 * bool, None, finite float, and dicts and lists of those)? Dict keys are not
 * checked here: orjson itself refuses non-string keys, and the codec checks
 * for keys that look like tags in orjson's output.
 *
 * The walk runs no Python code, so the borrowed references it holds stay
 * valid throughout. Nesting deeper than the interpreter's recursion limit
 * raises RecursionError, as the Python version does.
 *
 * page_cuts(payload, mask) finds where a large nested map's content-defined
 * pages end (trees._store_map) in the map's own canonical encoding, so its
 * pages are slices of that encoding rather than new encodings of each page.
 * It reads bytes only (no Python objects) and answers None for anything but
 * a plain JSON object whose keys need no escaping; the caller then cuts the
 * map in Python, as before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

static int plain_container(PyObject *container);

/* 1 if the item is plain, 0 if not, -1 on error (with an exception set). */
static int plain_item(PyObject *item)
{
    PyTypeObject *type = Py_TYPE(item);
    if (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
            || item == Py_None) {
        return 1;
    }
    if (type == &PyFloat_Type) {
        return isfinite(PyFloat_AS_DOUBLE(item)) ? 1 : 0;
    }
    if (type == &PyDict_Type || type == &PyList_Type) {
        return plain_container(item);
    }
    return 0;
}

static int plain_container(PyObject *container)
{
    int result = 1;
    if (Py_EnterRecursiveCall(" while checking a value for the canonical codec")) {
        return -1;
    }
    if (Py_TYPE(container) == &PyDict_Type) {
        Py_ssize_t position = 0;
        PyObject *key, *value;
        while (PyDict_Next(container, &position, &key, &value)) {
            result = plain_item(value);
            if (result != 1) {
                break;
            }
        }
    }
    else {
        Py_ssize_t size = PyList_GET_SIZE(container);
        for (Py_ssize_t index = 0; index < size; index++) {
            result = plain_item(PyList_GET_ITEM(container, index));
            if (result != 1) {
                break;
            }
        }
    }
    Py_LeaveRecursiveCall();
    return result;
}

static PyObject *plain(PyObject *module, PyObject *container)
{
    if (Py_TYPE(container) != &PyDict_Type && Py_TYPE(container) != &PyList_Type) {
        PyErr_SetString(PyExc_TypeError, "plain() takes a dict or a list");
        return NULL;
    }
    int result = plain_container(container);
    if (result < 0) {
        return NULL;
    }
    return PyBool_FromLong(result);
}

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32), table-driven. */
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *data, Py_ssize_t size)
{
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < size; i++) {
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

/* The end of the JSON string starting at data[at] == '"' (the index after its closing
 * quote), or -1 if it is not closed. Sets *escaped when it holds a backslash. */
static Py_ssize_t string_end(const unsigned char *data, Py_ssize_t size, Py_ssize_t at,
                             int *escaped)
{
    for (Py_ssize_t i = at + 1; i < size; i++) {
        if (data[i] == '\\') {
            *escaped = 1;
            i++;
        }
        else if (data[i] == '"') {
            return i + 1;
        }
    }
    return -1;
}

/* The end of the JSON value starting at data[at] (the index of the ',' or '}' after
 * it, at depth 0), or -1 if the bytes end first or brackets do not balance. */
static Py_ssize_t value_end(const unsigned char *data, Py_ssize_t size, Py_ssize_t at)
{
    Py_ssize_t depth = 0;
    int escaped = 0;
    for (Py_ssize_t i = at; i < size;) {
        unsigned char c = data[i];
        if (c == '"') {
            i = string_end(data, size, i, &escaped);
            if (i < 0) {
                return -1;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        }
        else if (c == '}' || c == ']') {
            if (depth == 0) {
                return c == '}' ? i : -1;
            }
            depth--;
        }
        else if (c == ',' && depth == 0) {
            return i;
        }
        i++;
    }
    return -1;
}

static PyObject *page_cuts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "page_cuts() takes a bytes payload and an int mask");
        return NULL;
    }
    unsigned long mask = PyLong_AsUnsignedLong(args[1]);
    if (mask == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    /* A plain object's keys never start with '$' (such a map is written as a $map tag). */
    if (size < 3 || data[0] != '{' || data[1] != '"' || data[2] == '$' || data[size - 1] != '}') {
        Py_RETURN_NONE;
    }
    PyObject *cuts = PyList_New(0);
    if (cuts == NULL) {
        return NULL;
    }
    Py_ssize_t at = 1, count = 0;
    for (;;) {
        int escaped = 0;
        if (at >= size || data[at] != '"') {
            goto not_plain;
        }
        Py_ssize_t key_end = string_end(data, size, at, &escaped);
        if (key_end < 0 || escaped || key_end >= size || data[key_end] != ':') {
            goto not_plain;  /* an escaped key: its CRC is of the unescaped text */
        }
        Py_ssize_t end = value_end(data, size, key_end + 1);
        if (end < 0) {
            goto not_plain;
        }
        uint32_t crc = crc32_of(data + at + 1, key_end - at - 2);
        if (!(crc & (uint32_t)mask)) {
            PyObject *cut = Py_BuildValue("(nn)", count, end);
            if (cut == NULL || PyList_Append(cuts, cut) < 0) {
                Py_XDECREF(cut);
                Py_DECREF(cuts);
                return NULL;
            }
            Py_DECREF(cut);
        }
        count++;
        if (data[end] == '}') {
            if (end != size - 1) {
                goto not_plain;
            }
            break;
        }
        at = end + 1;
    }
    PyObject *result = Py_BuildValue("(nN)", count, cuts);
    return result;

not_plain:
    Py_DECREF(cuts);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"plain", plain, METH_O,
     "True when a dict or list holds only JSON types orjson writes losslessly."},
    {"page_cuts", (PyCFunction)(void (*)(void))page_cuts, METH_FASTCALL,
     "(members, [(index, end), ...]): where a canonical JSON object's keys' CRC-32 "
     "and a mask cut it into pages; None when it is not a plain object."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pinrun.artifacts._speedups",
    "Optional C speedups for pinrun's canonical codec.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    crc_init();
    return PyModule_Create(&module);
}
