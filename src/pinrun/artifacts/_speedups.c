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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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

static PyMethodDef methods[] = {
    {"plain", plain, METH_O,
     "True when a dict or list holds only JSON types orjson writes losslessly."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pinrun.artifacts._speedups",
    "Optional C speedups for pinrun's canonical codec.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
