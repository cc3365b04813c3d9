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
 *
 * Inline, inline_entries, inline_sizes and page_plan are the per-key loops of
 * snapshot_pages (a wide snapshot's small values kept inline in pages): the
 * same entries and the same page bytes as the Python code there, which is
 * what runs without a compiler. They hold borrowed references only while no
 * Python code runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <structmember.h>
#include <datetime.h>

#include "_seen.h"

static int plain_container(PyObject *container, int *ordered, int check_keys);
static int key_after(PyObject *previous, PyObject *key);
static int exact_str_keys(PyObject *dict);

/* 1 if the item is plain, 0 if not, -1 on error (with an exception set). ordered: NULL,
 * or cleared when a dict in the item has keys that are not exact str in ascending order. */
static int plain_item(PyObject *item, int *ordered)
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
        return plain_container(item, ordered, 1);
    }
    return 0;
}

static int plain_container(PyObject *container, int *ordered, int check_keys)
{
    int result = 1;
    if (Py_EnterRecursiveCall(" while checking a value for the canonical codec")) {
        return -1;
    }
    if (Py_TYPE(container) == &PyDict_Type) {
        Py_ssize_t position = 0;
        PyObject *key, *value, *previous = NULL;
        check_keys = check_keys && ordered != NULL;
        /* As many as it holds (no Python code runs: it cannot change mid-walk). */
        for (Py_ssize_t left = PyDict_GET_SIZE(container); left > 0; left--) {
            if (!PyDict_Next(container, &position, &key, &value)) {
                break;
            }
            if (check_keys && *ordered) {
                if (!PyUnicode_CheckExact(key)
                        || (previous != NULL && !key_after(previous, key))) {
                    if (PyErr_Occurred()) {
                        result = -1;
                        break;
                    }
                    *ordered = 0;
                }
                previous = key;
            }
            result = plain_item(value, ordered);
            if (result != 1) {
                break;
            }
        }
    }
    else {
        Py_ssize_t size = PyList_GET_SIZE(container);
        for (Py_ssize_t index = 0; index < size; index++) {
            result = plain_item(PyList_GET_ITEM(container, index), ordered);
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
    int result = plain_container(container, NULL, 0);
    if (result < 0) {
        return NULL;
    }
    return PyBool_FromLong(result);
}

/* plain_in_order(container): 0 when not plain (see plain()), 2 when plain and every dict
 * inside it (not the container itself) has exact str keys in ascending order, which is
 * what sorting them would give, else 1. orjson then writes each member as it would with
 * its keys sorted, and the members themselves in the container's order. */
static PyObject *plain_in_order(PyObject *module, PyObject *container)
{
    if (Py_TYPE(container) != &PyDict_Type && Py_TYPE(container) != &PyList_Type) {
        PyErr_SetString(PyExc_TypeError, "plain_in_order() takes a dict or a list");
        return NULL;
    }
    int ordered = 1;
    int result = plain_container(container, &ordered, 0);
    if (result < 0) {
        return NULL;
    }
    return PyLong_FromLong(result ? 1 + ordered : 0);
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

/* Bytes the JSON scanners below stop at: table-driven, so the bytes between them (most
 * of a value: digits, letters, ':') cost a load and a test each. STRING_STOP: '"' and
 * '\\' inside a string; VALUE_STOP: '"', brackets and ',' outside strings. */
#define STRING_STOP 1
#define VALUE_STOP 2
static unsigned char json_stops[256];

static void json_stops_init(void)
{
    json_stops['"'] = STRING_STOP | VALUE_STOP;
    json_stops['\\'] = STRING_STOP;
    json_stops['{'] = json_stops['['] = json_stops['}'] = json_stops[']'] = VALUE_STOP;
    json_stops[','] = VALUE_STOP;
}

/* The end of the JSON string starting at data[at] == '"' (the index after its closing
 * quote), or -1 if it is not closed. Sets *escaped when it holds a backslash. */
static Py_ssize_t string_end(const unsigned char *data, Py_ssize_t size, Py_ssize_t at,
                             int *escaped)
{
    for (Py_ssize_t i = at + 1; i < size; i++) {
        if (!(json_stops[data[i]] & STRING_STOP)) {
            continue;
        }
        if (data[i] == '"') {
            return i + 1;
        }
        *escaped = 1;  /* a backslash: the byte after it is part of the string */
        i++;
    }
    return -1;
}

/* The end of the JSON value starting at data[at] (the index of the ',' or '}' after
 * it, at depth 0), or -1 if the bytes end first or brackets do not balance. */
static Py_ssize_t value_end(const unsigned char *data, Py_ssize_t size, Py_ssize_t at)
{
    Py_ssize_t depth = 0;
    int escaped = 0;
    for (Py_ssize_t i = at; i < size; i++) {
        if (!(json_stops[data[i]] & VALUE_STOP)) {
            continue;
        }
        unsigned char c = data[i];
        if (c == '"') {
            i = string_end(data, size, i, &escaped);
            if (i < 0) {
                return -1;
            }
            i--;  /* (the loop steps past the closing quote) */
        }
        else if (c == '{' || c == '[') {
            depth++;
        }
        else if (c == '}' || c == ']') {
            if (depth == 0) {
                return c == '}' ? i : -1;
            }
            depth--;
        }
        else if (depth == 0) {  /* ',' */
            return i;
        }
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


/* ---------------------------------------------------------------- Inline */

typedef struct {
    PyObject_HEAD
    /* What the member starts with: the key (a str JSON writes as it is: the head is
     * '"', its UTF-8, '":'), or those bytes themselves (a key JSON escapes). */
    PyObject *head;
    PyObject *payload;  /* bytes: the value's canonical encoding (shared, not copied) */
    /* The member's size in bytes (head and payload), kept: pages are sized from it at
     * every commit, without reading the head and the payload again (two more objects
     * to bring into the cache, per key). Both are immutable, so it never changes. */
    Py_ssize_t size;
    unsigned int cut;   /* CRC-32 of the key's JSON (quotes included) */
} InlineObject;

static PyTypeObject InlineType;

/* The head's length in bytes (its UTF-8 is cached in the str by then). */
static Py_ssize_t head_size(InlineObject *self)
{
    if (PyBytes_CheckExact(self->head)) {
        return PyBytes_GET_SIZE(self->head);
    }
    Py_ssize_t size;
    PyUnicode_AsUTF8AndSize(self->head, &size);  /* checked when the entry was made */
    return size + 3;
}

/* Write the member (head and payload) at out; returns the end of what was written. */
static char *write_member(InlineObject *self, char *out)
{
    if (PyBytes_CheckExact(self->head)) {
        memcpy(out, PyBytes_AS_STRING(self->head), PyBytes_GET_SIZE(self->head));
        out += PyBytes_GET_SIZE(self->head);
    }
    else {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(self->head, &size);
        *out++ = '"';
        memcpy(out, text, size);
        out += size;
        *out++ = '"';
        *out++ = ':';
    }
    memcpy(out, PyBytes_AS_STRING(self->payload), PyBytes_GET_SIZE(self->payload));
    return out + PyBytes_GET_SIZE(self->payload);
}

static Py_ssize_t member_size(InlineObject *self)
{
    return self->size;
}

static PyObject *inline_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"member", "start", "cut", NULL};
    PyObject *member;
    Py_ssize_t start;
    unsigned long cut;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Snk", names, &member, &start, &cut)) {
        return NULL;
    }
    if (start < 0 || start > PyBytes_GET_SIZE(member) || cut > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "Inline: start or cut out of range");
        return NULL;
    }
    InlineObject *self = (InlineObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->head = PyBytes_FromStringAndSize(PyBytes_AS_STRING(member), start);
    self->payload = PyBytes_FromStringAndSize(PyBytes_AS_STRING(member) + start,
                                              PyBytes_GET_SIZE(member) - start);
    if (self->head == NULL || self->payload == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->cut = (unsigned int)cut;
    self->size = PyBytes_GET_SIZE(member);
    return (PyObject *)self;
}

static void inline_dealloc(InlineObject *self)
{
    Py_XDECREF(self->head);
    Py_XDECREF(self->payload);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *inline_member(InlineObject *self, void *closure)
{
    PyObject *member = PyBytes_FromStringAndSize(NULL, member_size(self));
    if (member != NULL) {
        write_member(self, PyBytes_AS_STRING(member));
    }
    return member;
}

static PyObject *inline_start(InlineObject *self, void *closure)
{
    return PyLong_FromSsize_t(head_size(self));
}

static PyObject *inline_payload(InlineObject *self, void *closure)
{
    Py_INCREF(self->payload);
    return self->payload;
}

static PyObject *inline_repr(InlineObject *self)
{
    PyObject *member = inline_member(self, NULL);
    if (member == NULL) {
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(member);
    PyObject *head = PyBytes_FromStringAndSize(PyBytes_AS_STRING(member), size < 40 ? size : 40);
    Py_DECREF(member);
    if (head == NULL) {
        return NULL;
    }
    PyObject *repr = PyUnicode_FromFormat("Inline(%R)", head);
    Py_DECREF(head);
    return repr;
}

/* Inline(member, start, cut) again: copies and pickles as the Python class does. */
static PyObject *inline_reduce(InlineObject *self, PyObject *unused)
{
    PyObject *member = inline_member(self, NULL);
    if (member == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(Nnk))", (PyObject *)Py_TYPE(self), member, head_size(self),
                         (unsigned long)self->cut);
}

static PyMethodDef inline_methods[] = {
    {"__reduce__", (PyCFunction)inline_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyMemberDef inline_members[] = {
    {"cut", T_UINT, offsetof(InlineObject, cut), READONLY,
     "The CRC-32 of the key, which decides where pages end."},
    {NULL},
};

static PyGetSetDef inline_getset[] = {
    {"member", (getter)inline_member, NULL,
     "The key's JSON, a colon, and the value's canonical encoding.", NULL},
    {"start", (getter)inline_start, NULL, "Where the value's encoding starts in member.", NULL},
    {"payload", (getter)inline_payload, NULL, "The value's canonical encoding.", NULL},
    {NULL},
};

static PyTypeObject InlineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinrun.artifacts._speedups.Inline",
    .tp_basicsize = sizeof(InlineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A small state value as its snapshot's page holds it: \"key\":<encoding>.",
    .tp_new = inline_new,
    .tp_dealloc = (destructor)inline_dealloc,
    .tp_repr = (reprfunc)inline_repr,
    .tp_methods = inline_methods,
    .tp_members = inline_members,
    .tp_getset = inline_getset,
};

/* A new Inline for key and payload (exact bytes); Py_None (new reference) when this
 * code does not make it: a key starting with '$', one that is not valid UTF-8, or one
 * JSON escapes (the Python code decides those). NULL with an exception on failure. */
static PyObject *make_inline(PyObject *key, PyObject *payload)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(key, &size);
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return NULL;
        }
        PyErr_Clear();  /* a lone surrogate */
        Py_RETURN_NONE;
    }
    if (size > 0 && text[0] == '$') {
        Py_RETURN_NONE;
    }
    uint32_t crc = crc_table[(0xFFFFFFFFu ^ '"') & 0xFF] ^ (0xFFFFFFFFu >> 8);
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            Py_RETURN_NONE;
        }
        crc = crc_table[(crc ^ c) & 0xFF] ^ (crc >> 8);
    }
    crc = crc_table[(crc ^ '"') & 0xFF] ^ (crc >> 8);
    InlineObject *made = PyObject_New(InlineObject, &InlineType);
    if (made == NULL) {
        return NULL;
    }
    Py_INCREF(key);
    Py_INCREF(payload);
    made->head = key;
    made->payload = payload;
    made->size = size + 3 + PyBytes_GET_SIZE(payload);  /* '"', the key, '":', the payload */
    made->cut = crc ^ 0xFFFFFFFFu;
    return (PyObject *)made;
}

/* other[key] (borrowed), read without a hash look-up when other holds that very key
 * object next from *cursor (a PyDict_Next position): two maps filled in the same order
 * (a state's values and their encodings) are read side by side, in memory order. NULL
 * when it is not there (then the caller looks it up). Runs no Python code. */
static PyObject *side_by_side(PyObject *other, PyObject *key, Py_ssize_t *cursor)
{
    Py_ssize_t position = *cursor;
    PyObject *held, *value;
    if (PyDict_Next(other, &position, &held, &value) && held == key) {
        *cursor = position;
        return value;
    }
    return NULL;
}

static PyObject *inline_entries(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1])
            || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "inline_entries() takes two dicts and an int");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
#if PY_VERSION_HEX < 0x030D0000
    /* Sized for every key at once (most are inline): no resize as it fills. */
    PyObject *entries = _PyDict_NewPresized(PyDict_GET_SIZE(args[0]));
#else
    PyObject *entries = PyDict_New();
#endif
    PyObject *rest = PyList_New(0);
    if (entries == NULL || rest == NULL) {
        goto failed;
    }
    Py_ssize_t position = 0, size = PyDict_GET_SIZE(args[0]), cursor = 0;
    PyObject *key, *value;
    while (PyDict_Next(args[0], &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            Py_DECREF(entries);
            Py_DECREF(rest);
            Py_RETURN_NONE;  /* the Python code names the key in its error */
        }
        /* The lookup may run Python code (a key of the payloads with the same hash and
         * its own __eq__), which could drop the state's key and value: hold them. */
        Py_INCREF(key);
        Py_INCREF(value);
        PyObject *payload = side_by_side(args[1], key, &cursor);
        if (payload == NULL) {
            payload = PyDict_GetItemWithError(args[1], key);
        }
        PyObject *made = NULL;
        int added = -1;
        if (payload == NULL && PyErr_Occurred()) {
            goto next;
        }
        if (PyDict_GET_SIZE(args[0]) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            goto next;
        }
        if (payload != NULL && PyBytes_CheckExact(payload) && !PyBytes_Check(value)
                && PyBytes_GET_SIZE(payload) <= limit) {
            made = make_inline(key, payload);
            if (made == NULL) {
                goto next;
            }
        }
        if (made != NULL && made != Py_None) {
            added = PyDict_SetItem(entries, key, made);
        }
        else {
            added = PyList_Append(rest, key);
        }
    next:
        Py_XDECREF(made);
        Py_DECREF(key);
        Py_DECREF(value);
        if (added < 0) {
            goto failed;
        }
    }
    return Py_BuildValue("(NN)", entries, rest);

failed:
    Py_XDECREF(entries);
    Py_XDECREF(rest);
    return NULL;
}

/* inline_into(state, payloads, limit, into): when every value of state has its encoding
 * in payloads (side by side, or looked up), no larger than limit, is not bytes, and
 * every key is an exact str that makes an Inline entry, put each key's entry into the
 * dict into, as into.update(the entries) would (new keys last, in state's order), and
 * return the members' total size; else None, with into untouched. (into's keys are a
 * run's, all exact str: a key of another kind could run code while it is compared,
 * but nothing here reads state or into after that.) A wide snapshot's
 * entries then go straight where the run keeps them: no dict of their own, and no
 * merge of it. Every entry is made before into changes, new keys are added with
 * setdefault (a failure takes them out again: into is left as it was) and keys into
 * held already are replaced last (no allocation: that cannot fail). */
static PyObject *inline_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1])
            || !PyLong_Check(args[2]) || !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "inline_into() takes two dicts, an int and a dict");
        return NULL;
    }
    PyObject *state = args[0], *payloads = args[1], *into = args[3];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (into == state || into == payloads) {
        Py_RETURN_NONE;
    }
    int keys_checked = 0;
    Py_ssize_t count = PyDict_GET_SIZE(state), made = 0, total = 0;
    PyObject **keys = PyMem_Malloc(sizeof(PyObject *) * (size_t)(count ? count : 1));
    PyObject **entries = PyMem_Malloc(sizeof(PyObject *) * (size_t)(count ? count : 1));
    char *replaced = PyMem_Calloc((size_t)(count ? count : 1), 1);
    PyObject *result = NULL;
    if (keys == NULL || entries == NULL || replaced == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t position = 0, cursor = 0;
    PyObject *key, *value;
    for (Py_ssize_t left = count; left > 0; left--) {
        if (!PyDict_Next(state, &position, &key, &value) || !PyUnicode_CheckExact(key)
                || PyBytes_Check(value)) {
            goto decline;
        }
        PyObject *payload = side_by_side(payloads, key, &cursor);
        if (payload == NULL) {
            /* Looked up: with the payloads' keys all exact str (checked once), no Python
             * code runs (no key's own __eq__), so state cannot change mid-walk. */
            if (!keys_checked) {
                if (!exact_str_keys(payloads)) {
                    goto decline;
                }
                keys_checked = 1;
            }
            payload = PyDict_GetItemWithError(payloads, key);
            if (payload == NULL) {
                if (PyErr_Occurred()) {
                    goto done;
                }
                goto decline;
            }
        }
        if (!PyBytes_CheckExact(payload) || PyBytes_GET_SIZE(payload) > limit) {
            goto decline;
        }
        PyObject *entry = make_inline(key, payload);
        if (entry == NULL) {
            goto done;
        }
        if (entry == Py_None) {
            Py_DECREF(entry);
            goto decline;
        }
        Py_INCREF(key);
        keys[made] = key;
        entries[made++] = entry;
        total += ((InlineObject *)entry)->size;
    }
    /* Every entry made: new keys in, in order (a failure takes them out again). */
    for (Py_ssize_t i = 0; i < made; i++) {
        PyObject *held = PyDict_SetDefault(into, keys[i], entries[i]);
        if (held == NULL) {
            for (Py_ssize_t j = 0; j < i; j++) {
                if (!replaced[j] && PyDict_DelItem(into, keys[j]) < 0) {
                    PyErr_Clear();  /* (it is there: cannot fail) */
                }
            }
            goto done;
        }
        replaced[i] = held != entries[i];
    }
    /* Then the keys into held already get their new entries (in place: no allocation). */
    for (Py_ssize_t i = 0; i < made; i++) {
        if (replaced[i] && PyDict_SetItem(into, keys[i], entries[i]) < 0) {
            goto done;
        }
    }
    result = PyLong_FromSsize_t(total);
    goto done;

decline:
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t i = 0; i < made; i++) {
        Py_DECREF(keys[i]);
        Py_DECREF(entries[i]);
    }
    PyMem_Free(keys);
    PyMem_Free(entries);
    PyMem_Free(replaced);
    return result;
}

static PyObject *inline_sizes(PyObject *module, PyObject *entries)
{
    if (!PyDict_CheckExact(entries)) {
        PyErr_SetString(PyExc_TypeError, "inline_sizes() takes a dict");
        return NULL;
    }
    Py_ssize_t position = 0, size = 0, own = 0;
    PyObject *key, *value;
    while (PyDict_Next(entries, &position, &key, &value)) {
        if (Py_TYPE(value) == &InlineType) {
            size += member_size((InlineObject *)value);
        }
        else {
            own++;
        }
    }
    return Py_BuildValue("(nn)", size, own);
}

/* The entry of keys[index] (a new reference), or NULL with an exception. A lookup may
 * run Python code (a key's __hash__ or __eq__, or an entry key's): the key is held
 * across it, and the list, read by index, must keep the size it had (count). */
static PyObject *entry_at(PyObject *keys, Py_ssize_t index, Py_ssize_t count,
                          PyObject *entries)
{
    if (PyList_GET_SIZE(keys) != count) {
        PyErr_SetString(PyExc_RuntimeError, "page_plan(): the list of keys changed size");
        return NULL;
    }
    PyObject *key = PyList_GET_ITEM(keys, index);
    Py_INCREF(key);
    PyObject *entry = PyDict_GetItemWithError(entries, key);
    if (entry == NULL && !PyErr_Occurred()) {
        PyErr_SetObject(PyExc_KeyError, key);
    }
    Py_XINCREF(entry);
    Py_DECREF(key);
    return entry;
}

/* entry_at, without a hash look-up when keys[index] is the very key object the dict
 * holds next from *cursor (a PyDict_Next position), or the one after it: the keys are
 * sorted and the dict is mostly in that order (a state: its inputs first), so its
 * entries are read in memory order. Identity proves it is that key's entry; otherwise
 * the look-up, as entry_at (and *cursor stays). After many misses in a row (a dict in
 * another order) the dict is tried only at every 64th key, until it hits again. */
static PyObject *next_entry(PyObject *keys, Py_ssize_t index, Py_ssize_t count,
                            PyObject *entries, Py_ssize_t *cursor, Py_ssize_t *misses)
{
    if (PyList_GET_SIZE(keys) != count) {
        PyErr_SetString(PyExc_RuntimeError, "page_plan(): the list of keys changed size");
        return NULL;
    }
    if (*misses < 16 || (index & 63) == 0) {
        PyObject *key = PyList_GET_ITEM(keys, index), *held, *entry;
        Py_ssize_t position = *cursor;
        for (int tries = 0; tries < 2 && PyDict_Next(entries, &position, &held, &entry);
                tries++) {
            if (held == key) {
                *cursor = position;
                *misses = 0;
                Py_INCREF(entry);
                return entry;
            }
        }
        (*misses)++;
    }
    return entry_at(keys, index, count, entries);
}

/* The page record cached under the page's first key when it holds exactly the entries
 * held[0:count] (the same objects), borrowed; NULL when there is none (no exception)
 * or on error (with one). A record is a list [entries tuple, payload, digest or None]. */
static PyObject *cached_page(PyObject *cache, PyObject *first_key, InlineObject **held,
                             Py_ssize_t count)
{
    /* An exact str key: the look-up runs no Python code. */
    PyObject *record = PyDict_GetItemWithError(cache, first_key);
    if (record == NULL || !PyList_CheckExact(record) || PyList_GET_SIZE(record) != 3) {
        return NULL;
    }
    PyObject *kept = PyList_GET_ITEM(record, 0);
    if (!PyTuple_CheckExact(kept) || PyTuple_GET_SIZE(kept) != count
            || !PyBytes_CheckExact(PyList_GET_ITEM(record, 1))) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyTuple_GET_ITEM(kept, i) != (PyObject *)held[i]) {
            return NULL;
        }
    }
    return record;
}

/* Append the page of keys[first:first + count] to plan, whose entries (all inline) are
 * held[0:count]: its payload, or the tuple of its keys when it encodes past split. With
 * a cache (a dict, or NULL), an inline page is a record [entries, payload, digest or
 * None] instead, found there when its first key's record holds the same entry objects
 * (an Inline never changes, and the record holds them: the same objects make the same
 * bytes), else made and put there (the caller fills in its digest). */
static int plan_page(PyObject *plan, PyObject *keys, Py_ssize_t count_all,
                     InlineObject **held, Py_ssize_t first, Py_ssize_t count,
                     Py_ssize_t split, PyObject *cache)
{
    if (PyList_GET_SIZE(keys) != count_all) {  /* (a look-up may have run code) */
        PyErr_SetString(PyExc_RuntimeError, "page_plan(): the list of keys changed size");
        return -1;
    }
    PyObject *item = NULL, *first_key = PyList_GET_ITEM(keys, first);
    /* A page kept with these very entries first (most, at a commit), with no need to
     * size it: its payload is its size (the same entries are the same bytes). */
    if (cache != NULL && PyUnicode_CheckExact(first_key)) {
        item = cached_page(cache, first_key, held, count);  /* (no Python code runs) */
        if (item != NULL && PyBytes_GET_SIZE(PyList_GET_ITEM(item, 1)) <= split) {
            return PyList_Append(plan, item);
        }
        if (item == NULL && PyErr_Occurred()) {
            return -1;
        }
        item = NULL;
    }
    Py_ssize_t size = 1 + count;  /* braces, and commas between */
    for (Py_ssize_t i = 0; i < count; i++) {
        size += member_size(held[i]);
    }
    if (size > split) {
        PyObject *slice = PyList_GetSlice(keys, first, first + count);
        item = slice != NULL ? PyList_AsTuple(slice) : NULL;
        Py_XDECREF(slice);
    }
    else if (cache != NULL && PyUnicode_CheckExact(first_key)) {
        Py_INCREF(first_key);
        {
            PyObject *kept = PyTuple_New(count);
            PyObject *payload = PyBytes_FromStringAndSize(NULL, size);
            if (kept != NULL && payload != NULL) {
                char *out = PyBytes_AS_STRING(payload);
                *out++ = '{';
                for (Py_ssize_t i = 0; i < count; i++) {
                    if (i > 0) {
                        *out++ = ',';
                    }
                    out = write_member(held[i], out);
                    Py_INCREF(held[i]);
                    PyTuple_SET_ITEM(kept, i, (PyObject *)held[i]);
                }
                *out = '}';
                item = PyList_New(3);
            }
            if (item != NULL) {
                PyList_SET_ITEM(item, 0, kept);
                PyList_SET_ITEM(item, 1, payload);
                Py_INCREF(Py_None);
                PyList_SET_ITEM(item, 2, Py_None);
                /* (An exact str key into a dict: no Python code runs.) */
                if (PyDict_SetItem(cache, first_key, item) < 0) {
                    Py_CLEAR(item);
                }
            }
            else {
                Py_XDECREF(kept);
                Py_XDECREF(payload);
            }
        }
        Py_DECREF(first_key);
    }
    else {
        item = PyBytes_FromStringAndSize(NULL, size);
        if (item != NULL) {
            char *out = PyBytes_AS_STRING(item);
            *out++ = '{';
            for (Py_ssize_t i = 0; i < count; i++) {
                if (i > 0) {
                    *out++ = ',';
                }
                out = write_member(held[i], out);
            }
            *out = '}';
        }
    }
    if (item == NULL) {
        return -1;
    }
    int result = PyList_Append(plan, item);
    Py_DECREF(item);
    return result;
}

/* Drop the entries held[0:count] (new references). */
static void release(InlineObject **held, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_DECREF(held[i]);
    }
}

static PyObject *page_plan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 4 && nargs != 5) || !PyList_CheckExact(args[0])
            || !PyDict_CheckExact(args[1]) || !PyLong_Check(args[2])
            || !PyLong_Check(args[3])
            || (nargs == 5 && args[4] != Py_None && !PyDict_CheckExact(args[4]))) {
        PyErr_SetString(PyExc_TypeError,
                        "page_plan() takes a list, a dict, two ints and a dict or None");
        return NULL;
    }
    PyObject *keys = args[0], *entries = args[1];
    PyObject *cache = nargs == 5 && args[4] != Py_None ? args[4] : NULL;
    unsigned long mask = PyLong_AsUnsignedLong(args[2]);
    if (mask == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t split = PyLong_AsSsize_t(args[3]);
    if (split == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(keys), start = 0, taken = 0;
    /* The entries of the page being gathered (keys[start:start + taken]), held (new
     * references) from their one look-up until the page is planned. */
    InlineObject **held = PyMem_Malloc(sizeof(InlineObject *) * (size_t)(count ? count : 1));
    PyObject *plan = PyList_New(0);
    if (held == NULL || plan == NULL) {
        PyMem_Free(held);
        Py_XDECREF(plan);
        return PyErr_NoMemory();
    }
    Py_ssize_t cursor = 0, misses = 0;
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *entry = next_entry(keys, index, count, entries, &cursor, &misses);
        if (entry == NULL) {
            goto failed;
        }
        if (Py_TYPE(entry) == &InlineType) {
            held[taken++] = (InlineObject *)entry;
            if (!(((InlineObject *)entry)->cut & (unsigned int)mask)) {
                int planned = plan_page(plan, keys, count, held, start, taken, split, cache);
                release(held, taken);
                taken = 0;
                if (planned < 0) {
                    goto failed;
                }
                start = index + 1;
            }
            continue;
        }
        Py_DECREF(entry);
        /* A value with its own object is a page of its own (a map of one key). */
        if (taken > 0) {
            int planned = plan_page(plan, keys, count, held, start, taken, split, cache);
            release(held, taken);
            taken = 0;
            if (planned < 0) {
                goto failed;
            }
        }
        if (PyList_GET_SIZE(keys) != count) {  /* (a page's look-ups may have run code) */
            PyErr_SetString(PyExc_RuntimeError, "page_plan(): the list of keys changed size");
            goto failed;
        }
        PyObject *alone = PyTuple_Pack(1, PyList_GET_ITEM(keys, index));
        if (alone == NULL || PyList_Append(plan, alone) < 0) {
            Py_XDECREF(alone);
            goto failed;
        }
        Py_DECREF(alone);
        start = index + 1;
    }
    if (taken > 0) {
        int planned = plan_page(plan, keys, count, held, start, taken, split, cache);
        release(held, taken);
        taken = 0;
        if (planned < 0) {
            goto failed;
        }
    }
    PyMem_Free(held);
    return plan;

failed:
    release(held, taken);
    PyMem_Free(held);
    Py_DECREF(plan);
    return NULL;
}


/* ---------------------------------------------------------------- many values at once */

/* 1 when data[0:size] is at most one JSON value at its top level: brackets balance,
 * and no ',' or ':' sits outside strings and brackets, so joined as a member of an
 * object it cannot add, end or reopen a member. (orjson checks the rest.) */
static int one_value(const unsigned char *data, Py_ssize_t size)
{
    Py_ssize_t depth = 0;
    int escaped = 0;
    if (size == 0) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < size;) {
        unsigned char c = data[i];
        if (c == '"') {
            i = string_end(data, size, i, &escaped);
            if (i < 0) {
                return 0;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        }
        else if (c == '}' || c == ']') {
            if (depth == 0) {
                return 0;
            }
            depth--;
        }
        else if ((c == ',' || c == ':') && depth == 0) {
            return 0;
        }
        i++;
    }
    return depth == 0;
}

/* The key's UTF-8 when JSON writes it as it is between quotes and it does not start
 * with '$'; NULL (no exception) otherwise. */
static const char *plain_key(PyObject *key, Py_ssize_t *size)
{
    if (!PyUnicode_CheckExact(key)) {
        return NULL;
    }
    const char *text = PyUnicode_AsUTF8AndSize(key, size);
    if (text == NULL) {
        PyErr_Clear();  /* a lone surrogate */
        return NULL;
    }
    if (*size > 0 && text[0] == '$') {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            return NULL;
        }
    }
    return text;
}

static PyObject *join_members(PyObject *module, PyObject *encodings)
{
    if (!PyDict_CheckExact(encodings)) {
        PyErr_SetString(PyExc_TypeError, "join_members() takes a dict");
        return NULL;
    }
    Py_ssize_t position = 0, size = 1 + PyDict_GET_SIZE(encodings), key_size;
    PyObject *key, *raw;
    while (PyDict_Next(encodings, &position, &key, &raw)) {
        if (plain_key(key, &key_size) == NULL || !PyBytes_CheckExact(raw)
                || !one_value((const unsigned char *)PyBytes_AS_STRING(raw),
                              PyBytes_GET_SIZE(raw))) {
            Py_RETURN_NONE;
        }
        size += key_size + 3 + PyBytes_GET_SIZE(raw);
    }
    if (PyDict_GET_SIZE(encodings) == 0) {
        size = 2;
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(joined);
    *out++ = '{';
    position = 0;
    int first = 1;
    /* (no Python code ran since the check: the same keys and encodings) */
    while (PyDict_Next(encodings, &position, &key, &raw)) {
        const char *text = PyUnicode_AsUTF8AndSize(key, &key_size);
        if (!first) {
            *out++ = ',';
        }
        first = 0;
        *out++ = '"';
        memcpy(out, text, key_size);
        out += key_size;
        *out++ = '"';
        *out++ = ':';
        memcpy(out, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
        out += PyBytes_GET_SIZE(raw);
    }
    *out = '}';
    return joined;
}

static PyObject *split_values(PyObject *module, PyObject *payload)
{
    if (!PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "split_values() takes bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    if (size < 2 || data[0] != '{' || data[size - 1] != '}') {
        Py_RETURN_NONE;
    }
    PyObject *values = PyList_New(0);
    if (values == NULL) {
        return NULL;
    }
    if (size == 2) {
        return values;
    }
    Py_ssize_t at = 1;
    for (;;) {
        int escaped = 0;
        if (data[at] != '"') {
            goto not_object;
        }
        Py_ssize_t key_end = string_end(data, size, at, &escaped);
        if (key_end < 0 || key_end >= size || data[key_end] != ':') {
            goto not_object;
        }
        Py_ssize_t end = value_end(data, size, key_end + 1);
        if (end < 0) {
            goto not_object;
        }
        PyObject *value = PyBytes_FromStringAndSize((const char *)data + key_end + 1,
                                                    end - key_end - 1);
        if (value == NULL || PyList_Append(values, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(values);
            return NULL;
        }
        Py_DECREF(value);
        if (data[end] == '}') {
            if (end != size - 1) {
                goto not_object;
            }
            return values;
        }
        at = end + 1;
    }

not_object:
    Py_DECREF(values);
    Py_RETURN_NONE;
}

/* split_map(payload, values): {key: value's encoding} of a JSON object payload whose
 * members are exactly values' keys in values' order (each written as it is, no escape),
 * cut as split_values cuts them; None when they are not (keys in another order, or one
 * JSON escapes: the caller cuts and matches them itself). The dict is walked while no
 * Python code runs (exact str keys; the new dict's are those same keys). */
static PyObject *split_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "split_map() takes bytes and a dict");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    PyObject *values = args[1];
    if (size < 2 || data[0] != '{' || data[size - 1] != '}' || PyDict_GET_SIZE(values) == 0) {
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX < 0x030D0000
    PyObject *out = _PyDict_NewPresized(PyDict_GET_SIZE(values));  /* (no resize as it fills) */
#else
    PyObject *out = PyDict_New();
#endif
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t at = 1, position = 0;
    PyObject *key, *value;
    while (PyDict_Next(values, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || at >= size || data[at] != '"') {
            goto not_these;
        }
        Py_ssize_t length;
        const char *text;
        if (PyUnicode_IS_COMPACT_ASCII(key)) {
            text = (const char *)PyUnicode_DATA(key);
            length = PyUnicode_GET_LENGTH(key);
        }
        else {
            text = PyUnicode_AsUTF8AndSize(key, &length);
            if (text == NULL) {
                PyErr_Clear();
                goto not_these;
            }
        }
        int escaped = 0;
        Py_ssize_t key_end = string_end(data, size, at, &escaped);
        if (key_end < 0 || escaped || key_end != at + length + 2 || key_end >= size
                || data[key_end] != ':'
                || memcmp(data + at + 1, text, (size_t)length) != 0) {
            goto not_these;
        }
        Py_ssize_t end = value_end(data, size, key_end + 1);
        if (end < 0) {
            goto not_these;
        }
        PyObject *part = PyBytes_FromStringAndSize((const char *)data + key_end + 1,
                                                   end - key_end - 1);
        if (part == NULL || PyDict_SetItem(out, key, part) < 0) {
            Py_XDECREF(part);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(part);
        at = end + 1;
        if (data[end] == '}') {
            break;
        }
    }
    if (at != size || PyDict_GET_SIZE(out) != PyDict_GET_SIZE(values)) {
        goto not_these;
    }
    return out;

not_these:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ canonical
 *
 * canonical(value): is value a tree of exact dicts and lists of plain JSON
 * scalars (str, int, float, bool, None) that decode(encode(value)) would give
 * back as it is: every dict's keys exact str, in sorted order (a decoded dict
 * has them so), none starting with '$' or holding a lone surrogate (the codec
 * writes those in a tagged form, in another order)? The engine then hands a
 * step the value itself once its encoding is checked to be the recorded one,
 * instead of decoding a copy. Nesting past CANONICAL_DEPTH answers False.
 *
 * The walk allocates nothing and runs no Python code (exact str keys compare
 * in C), so the borrowed references it holds stay valid throughout.
 */

#define CANONICAL_DEPTH 200

/* 1 when a dict key reads back as itself, in the same place (see above); else 0. */
static int canonical_key(PyObject *key)
{
    if (!PyUnicode_CheckExact(key)) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(key);
    int kind = PyUnicode_KIND(key);
    const void *data = PyUnicode_DATA(key);
    if (length > 0 && PyUnicode_READ(kind, data, 0) == '$') {
        return 0;
    }
    if (kind == PyUnicode_1BYTE_KIND) {
        return 1;
    }
    for (Py_ssize_t index = 0; index < length; index++) {
        Py_UCS4 unit = PyUnicode_READ(kind, data, index);
        if (unit >= 0xD800 && unit <= 0xDFFF) {
            return 0;
        }
    }
    return 1;
}

/* Whether exact str key comes after previous (code point order, which is the order of
   their UTF-8 bytes: orjson's). ASCII keys (most) by memcmp; 0 with an exception on error. */
static int key_after(PyObject *previous, PyObject *key)
{
    if (PyUnicode_IS_COMPACT_ASCII(previous) && PyUnicode_IS_COMPACT_ASCII(key)) {
        Py_ssize_t left = PyUnicode_GET_LENGTH(previous), right = PyUnicode_GET_LENGTH(key);
        int order = memcmp(PyUnicode_DATA(previous), PyUnicode_DATA(key),
                           (size_t)(left < right ? left : right));
        return order < 0 || (order == 0 && left < right);
    }
    int order = PyUnicode_Compare(previous, key);
    return order == -1 ? !PyErr_Occurred() : 0;
}

/* 1 canonical, 0 not, -1 on error (with an exception set). */
static int canonical_item(PyObject *item, int depth)
{
    PyTypeObject *type = Py_TYPE(item);
    if (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
            || type == &PyFloat_Type || item == Py_None) {
        return 1;
    }
    if (depth >= CANONICAL_DEPTH) {
        return 0;
    }
    if (type == &PyDict_Type) {
        Py_ssize_t position = 0;
        PyObject *key, *value, *previous = NULL;
        while (PyDict_Next(item, &position, &key, &value)) {
            if (!canonical_key(key)) {
                return 0;
            }
            if (previous != NULL && !key_after(previous, key)) {
                if (PyErr_Occurred()) {
                    return -1;
                }
                return 0;
            }
            previous = key;
            int inner = canonical_item(value, depth + 1);
            if (inner != 1) {
                return inner;
            }
        }
        return 1;
    }
    if (type == &PyList_Type) {
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(item); index++) {
            int inner = canonical_item(PyList_GET_ITEM(item, index), depth + 1);
            if (inner != 1) {
                return inner;
            }
        }
        return 1;
    }
    return 0;
}

static PyObject *canonical(PyObject *module, PyObject *value)
{
    int result = canonical_item(value, 0);
    if (result < 0) {
        return NULL;
    }
    return PyBool_FromLong(result);
}

/* ------------------------------------------------------------------ still_encodes
 *
 * still_encodes(value, encoding): is value canonical (see canonical() above) and
 * exactly what encoding, a canonical encoding pinrun made, holds: encode(value) ==
 * encoding? One walk of the value against the bytes, which allocates no Python object
 * and runs no Python code, instead of canonical(), a new encoding and a comparison.
 * It answers True only when sure: a str JSON escapes, an int past 64 bits, anything
 * not plain is False (the caller then checks the slow way). A float is compared by
 * value: the encoding's number (which has a '.' or an exponent, as only a float's has)
 * read back is the value, bit for bit; orjson wrote that token for that very double,
 * and writes a double one way. */

/* 1 for the bytes JSON writes escaped ('"', '\\' and those below 0x20), else 0. */
static const unsigned char json_escaped[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,  /* '\\' */
};

/* Whether the count bytes at text are the bytes at data and none is one JSON escapes
 * (such a byte could close the string early: a string holding '","' would match a
 * changed map's bytes). One pass for both, byte by byte: most texts here are a few
 * bytes (keys, short values), where a call to memcmp costs more than the loop. */
static int same_plain_bytes(const unsigned char *text, const unsigned char *data,
                            Py_ssize_t count)
{
    if (count > 64) {
        if (memcmp(data, text, (size_t)count) != 0) {
            return 0;
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            if (json_escaped[text[i]]) {
                return 0;
            }
        }
        return 1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char c = text[i];
        if (c != data[i] || json_escaped[c]) {
            return 0;
        }
    }
    return 1;
}

/* The end of s's JSON string (with quotes) when it sits at data[at] as it is (no
 * escapes), else -1. *utf8 / *length: its UTF-8, for the caller's order check. */
static Py_ssize_t match_text(PyObject *text, const unsigned char *data, Py_ssize_t size,
                             Py_ssize_t at, const char **utf8, Py_ssize_t *length)
{
    const char *bytes;
    Py_ssize_t count;
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        bytes = (const char *)PyUnicode_DATA(text);
        count = PyUnicode_GET_LENGTH(text);
    }
    else {
        bytes = PyUnicode_AsUTF8AndSize(text, &count);
        if (bytes == NULL) {
            PyErr_Clear();  /* a lone surrogate: written in a tagged form */
            return -1;
        }
    }
    if (at + count + 2 > size || data[at] != '"' || data[at + count + 1] != '"'
            || !same_plain_bytes((const unsigned char *)bytes, data + at + 1, count)) {
        return -1;
    }
    if (utf8 != NULL) {
        *utf8 = bytes;
        *length = count;
    }
    return at + count + 2;
}

/* Whether the UTF-8 bytes left come strictly before right (code point order). */
static int bytes_before(const char *left, Py_ssize_t left_length, const char *right,
                        Py_ssize_t right_length)
{
    Py_ssize_t common = left_length < right_length ? left_length : right_length;
    for (Py_ssize_t i = 0; i < common; i++) {
        if (left[i] != right[i]) {
            return (unsigned char)left[i] < (unsigned char)right[i];
        }
    }
    return left_length < right_length;
}

static Py_ssize_t match_value(PyObject *value, const unsigned char *data, Py_ssize_t size,
                              Py_ssize_t at, int depth, SeenLog *log);

/* Record a dict (see seen_dict), and its members first when it is seen by them. 0, or -1
 * (the log failed). No Python code runs: the dict cannot change between the passes. */
static int seen_members(SeenLog *log, PyObject *dict)
{
    int members = seen_dict(log, dict);
    if (members <= 0) {
        return members;
    }
    Py_ssize_t position = 0;
    PyObject *key, *item;
    while (PyDict_Next(dict, &position, &key, &item)) {
        seen_push(log, key);
        seen_push(log, item);
    }
    return 0;
}

static Py_ssize_t match_literal(const unsigned char *data, Py_ssize_t size, Py_ssize_t at,
                                const char *literal, Py_ssize_t length)
{
    if (at + length > size || memcmp(data + at, literal, (size_t)length) != 0) {
        return -1;
    }
    return at + length;
}

/* An int is read off the bytes (its digits, at most 19: a long long) and compared with
 * the value: the bytes are the int's canonical form when they read as it, with no
 * leading zero and a '-' only before a negative one (a decimal form is unique). */
static Py_ssize_t match_int(PyObject *value, const unsigned char *data, Py_ssize_t size,
                            Py_ssize_t at)
{
    int overflow = 0;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (number == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    unsigned long long magnitude = number < 0 ? 0ull - (unsigned long long)number
                                              : (unsigned long long)number;
    if (number < 0) {
        if (at >= size || data[at] != '-') {
            return -1;
        }
        at++;
    }
    Py_ssize_t first = at;
    unsigned long long read = 0;
    while (at < size && (unsigned char)(data[at] - '0') < 10) {
        if (at - first == 19) {
            return -1;  /* more digits than a long long has */
        }
        read = read * 10 + (unsigned long long)(data[at] - '0');
        at++;
    }
    if (at == first || read != magnitude || (data[first] == '0' && at - first > 1)) {
        return -1;
    }
    return at;
}

static Py_ssize_t match_float(PyObject *value, const unsigned char *data, Py_ssize_t size,
                              Py_ssize_t at)
{
    double number = PyFloat_AS_DOUBLE(value);
    if (!isfinite(number)) {
        return -1;  /* written in a tagged form */
    }
    char token[40];
    Py_ssize_t length = 0;
    int fraction = 0;
    while (at + length < size && length < (Py_ssize_t)sizeof token - 1) {
        unsigned char c = data[at + length];
        if (c == '.' || c == 'e' || c == 'E') {
            fraction = 1;
        }
        else if (!(c == '-' || c == '+' || (c >= '0' && c <= '9'))) {
            break;
        }
        token[length++] = (char)c;
    }
    if (!fraction || length == 0 || length >= (Py_ssize_t)sizeof token - 1) {
        return -1;
    }
    token[length] = '\0';
    char *parsed_end = NULL;
    double read = PyOS_string_to_double(token, &parsed_end, NULL);
    if (read == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (parsed_end != token + length || memcmp(&read, &number, sizeof number) != 0) {
        return -1;
    }
    return at + length;
}

static Py_ssize_t match_dict(PyObject *value, const unsigned char *data, Py_ssize_t size,
                             Py_ssize_t at, int depth, SeenLog *log)
{
    if (at >= size || data[at] != '{') {
        return -1;
    }
    at++;
    if (log != NULL && seen_members(log, value) < 0) {
        return -1;
    }
    Py_ssize_t position = 0, previous_length = 0;
    const char *previous = NULL;
    PyObject *key, *item;
    /* As many members as it holds (no Python code runs: the dict cannot change), so
     * the walk ends without a last call to find there is no more. */
    for (Py_ssize_t left = PyDict_GET_SIZE(value); left > 0; left--) {
        if (!PyDict_Next(value, &position, &key, &item)) {
            return -1;
        }
        if (!PyUnicode_CheckExact(key)) {
            return -1;
        }
        if (previous != NULL) {
            if (at >= size || data[at] != ',') {
                return -1;
            }
            at++;
        }
        const char *utf8;
        Py_ssize_t length;
        at = match_text(key, data, size, at, &utf8, &length);
        if (at < 0 || at >= size || data[at] != ':' || (length > 0 && utf8[0] == '$')) {
            return -1;
        }
        /* Keys in ascending order of their UTF-8 bytes (a decoded dict's order). */
        if (previous != NULL && !bytes_before(previous, previous_length, utf8, length)) {
            return -1;
        }
        previous = utf8;
        previous_length = length;
        at = match_value(item, data, size, at + 1, depth + 1, log);
        if (at < 0) {
            return -1;
        }
    }
    if (at >= size || data[at] != '}') {
        return -1;
    }
    return at + 1;
}

static Py_ssize_t match_value(PyObject *value, const unsigned char *data, Py_ssize_t size,
                              Py_ssize_t at, int depth, SeenLog *log)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyDict_Type) {
        return depth >= CANONICAL_DEPTH ? -1 : match_dict(value, data, size, at, depth, log);
    }
    if (type == &PyList_Type) {
        if (depth >= CANONICAL_DEPTH || at >= size || data[at] != '[') {
            return -1;
        }
        at++;
        if (log != NULL && seen_list(log, value) < 0) {
            return -1;
        }
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(value); index++) {
            if (index > 0) {
                if (at >= size || data[at] != ',') {
                    return -1;
                }
                at++;
            }
            at = match_value(PyList_GET_ITEM(value, index), data, size, at, depth + 1, log);
            if (at < 0) {
                return -1;
            }
        }
        if (at >= size || data[at] != ']') {
            return -1;
        }
        return at + 1;
    }
    if (type == &PyUnicode_Type) {
        return match_text(value, data, size, at, NULL, NULL);
    }
    if (type == &PyLong_Type) {
        return match_int(value, data, size, at);
    }
    if (type == &PyFloat_Type) {
        return match_float(value, data, size, at);
    }
    if (value == Py_True) {
        return match_literal(data, size, at, "true", 4);
    }
    if (value == Py_False) {
        return match_literal(data, size, at, "false", 5);
    }
    if (value == Py_None) {
        return match_literal(data, size, at, "null", 4);
    }
    return -1;
}

static int encodes_to(PyObject *value, PyObject *encoding)
{
    if (!PyBytes_CheckExact(encoding)) {
        return 0;  /* (a bytes value's BytesEntry is no JSON) */
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(encoding);
    Py_ssize_t size = PyBytes_GET_SIZE(encoding);
    return match_value(value, data, size, 0, 0, NULL) == size;
}

static PyObject *still_encodes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "still_encodes() takes a value and its encoding");
        return NULL;
    }
    return PyBool_FromLong(encodes_to(args[0], args[1]));
}

/* seen_encoding(value, encoding): still_encodes(), and when it says yes, the Seen of the
 * objects the walk went over (see _seen.c); None when it says no. */
static PyObject *seen_encoding(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seen_encoding() takes a value and its encoding");
        return NULL;
    }
    PyObject *value = args[0], *encoding = args[1];
    if (!PyBytes_CheckExact(encoding)
            || (Py_TYPE(value) != &PyDict_Type && Py_TYPE(value) != &PyList_Type)) {
        Py_RETURN_NONE;
    }
    SeenLog log = {0};
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(encoding);
    Py_ssize_t size = PyBytes_GET_SIZE(encoding);
    if (match_value(value, data, size, 0, 0, &log) != size || log.failed) {
        seen_clear(&log);
        Py_RETURN_NONE;
    }
    return seen_from_log(&log, encoding);
}

static int seen_walk(PyObject *item, int depth, SeenLog *log);

/* seen_walk of a list's item or a dict's value: a string, an int, a bool or None (most
 * members) is taken without the call. */
static inline int seen_walk_member(PyObject *value, int depth, SeenLog *log)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
            || value == Py_None) {
        return 1;
    }
    return seen_walk(value, depth, log);
}

/* What encode_seen walks: canonical() (see canonical_item) with finite floats only (as
 * plain() takes: the codec writes the others in a tagged form), each object recorded.
 * 1 yes, 0 no, -1 on error (with an exception set). */
static int seen_walk(PyObject *item, int depth, SeenLog *log)
{
    PyTypeObject *type = Py_TYPE(item);
    if (type == &PyFloat_Type) {
        return isfinite(PyFloat_AS_DOUBLE(item)) ? 1 : 0;
    }
    if (type != &PyDict_Type && type != &PyList_Type) {
        return type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
            || item == Py_None;
    }
    if (depth >= CANONICAL_DEPTH) {
        return 0;
    }
    if (type == &PyList_Type) {
        if (seen_list(log, item) < 0) {
            return 0;
        }
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(item); index++) {
            int made = seen_walk_member(PyList_GET_ITEM(item, index), depth + 1, log);
            if (made != 1) {
                return made;
            }
        }
        return 1;
    }
    if (seen_members(log, item) < 0) {
        return 0;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value, *previous = NULL;
    /* As many members as it holds (no Python code runs: it cannot change mid-walk). */
    for (Py_ssize_t left = PyDict_GET_SIZE(item); left > 0; left--) {
        if (!PyDict_Next(item, &position, &key, &value)) {
            return 0;
        }
        if (Py_TYPE(key) == &PyUnicode_Type && PyUnicode_IS_COMPACT_ASCII(key)
                && previous != NULL && PyUnicode_IS_COMPACT_ASCII(previous)) {
            /* Most keys: ASCII (no surrogate), after another ASCII key. */
            Py_ssize_t length = PyUnicode_GET_LENGTH(key);
            Py_ssize_t before = PyUnicode_GET_LENGTH(previous);
            const char *text = (const char *)PyUnicode_DATA(key);
            int order = memcmp(PyUnicode_DATA(previous), text,
                               (size_t)(before < length ? before : length));
            if ((length > 0 && text[0] == '$') || order > 0 || (order == 0 && before >= length)) {
                return 0;
            }
        }
        else {
            if (!canonical_key(key)) {
                return 0;
            }
            if (previous != NULL && !key_after(previous, key)) {
                return PyErr_Occurred() ? -1 : 0;
            }
        }
        previous = key;
        int made = seen_walk_member(value, depth + 1, log);
        if (made != 1) {
            return made;
        }
    }
    return 1;
}

static PyObject *option_name = NULL;  /* ("option",): dumps' keyword */

/* What orjson answered (out: a new reference, or NULL) for encode_seen and encode_wide:
 * 1 when its bytes are the codec's (out kept); 0 when it refused the value, or the bytes
 * hold a "$ key or string (the codec tags those: not its bytes), with out released and
 * log cleared, for the caller to answer None; -1 on another error (log cleared). */
static int orjson_answer(PyObject *out, SeenLog *log)
{
    if (out == NULL || !PyBytes_CheckExact(out)) {
        seen_clear(log);
        if (out == NULL && !PyErr_ExceptionMatches(PyExc_TypeError)) {
            return -1;  /* (orjson's refusals are TypeErrors: an int past 64 bits) */
        }
        PyErr_Clear();
        Py_XDECREF(out);
        return 0;
    }
    const char *data = PyBytes_AS_STRING(out);
    Py_ssize_t size = PyBytes_GET_SIZE(out);
    const char *dollar = memchr(data, '$', (size_t)size);
    for (; dollar != NULL; dollar = memchr(dollar + 1, '$', (size_t)(data + size - dollar - 1))) {
        if (dollar > data && dollar[-1] == '"') {
            seen_clear(log);
            Py_DECREF(out);
            return 0;
        }
    }
    return 1;
}

/* encode_seen(value, dumps, option, least, compact_below): (encoding, seen) of a dict or
 * list that reads back as it is (canonical(), finite floats), encoded by
 * dumps(value, option=option) (orjson's; the walk checks that every dict's keys are in
 * order, so the caller need not ask it to sort them) right after the walk that saw
 * it, with no Python code run in between (the walk and dumps run none on such a value,
 * and allocate no object the cycle collector counts), so the Seen and the encoding are
 * of one and the same value. seen is None when the encoding is shorter than least; an
 * encoding shorter than compact_below is copied to an exact-size bytes (orjson hands
 * back its working buffer). None when it does not apply: not such a value, an int
 * orjson refuses, or an encoding holding '"$' (the codec's tagged walk decides those). */
static PyObject *encode_seen(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t least, compact_below;
    if (nargs != 5 || (least = PyLong_AsSsize_t(args[3])) < 0
            || (compact_below = PyLong_AsSsize_t(args[4])) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "encode_seen() takes a value, dumps, its "
                            "option, and two sizes");
        }
        return NULL;
    }
    PyObject *value = args[0];
    if (Py_TYPE(value) != &PyDict_Type && Py_TYPE(value) != &PyList_Type) {
        Py_RETURN_NONE;
    }
    SeenLog log = {0};
    int walked = seen_walk(value, 0, &log);
    if (walked != 1 || log.failed) {  /* (out of memory: the codec's own way, then) */
        seen_clear(&log);
        if (walked < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *call[2] = {value, args[2]};
    PyObject *out = PyObject_Vectorcall(args[1], call, 1, option_name);
    int taken = orjson_answer(out, &log);
    if (taken <= 0) {
        if (taken < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    const char *data = PyBytes_AS_STRING(out);
    Py_ssize_t size = PyBytes_GET_SIZE(out);
    if (size < compact_below) {
        PyObject *compact = PyBytes_FromStringAndSize(data, size);
        Py_DECREF(out);
        if (compact == NULL) {
            seen_clear(&log);
            return NULL;
        }
        out = compact;
    }
    PyObject *seen;
    if (size < least) {
        seen_clear(&log);
        seen = Py_NewRef(Py_None);
    }
    else {
        seen = seen_from_log(&log, out);
        if (seen == NULL) {
            Py_DECREF(out);
            return NULL;
        }
    }
    PyObject *pair = PyTuple_Pack(2, out, seen);
    Py_DECREF(out);
    Py_DECREF(seen);
    return pair;
}

/* encode_wide(values, dumps, least): (encodings, wide) of a dict of at least least exact
 * str keys whose values each read back as they are (seen_walk: canonical(), finite
 * floats): dumps(values) (orjson's, the dict's keys in its own order; each value's maps
 * are in key order already) right after the walk that saw the dict and every container
 * in its values, with no Python code run in between, cut into each value's encoding by
 * split_map (the same bytes as encode() of each value); wide is the Wide of the dict,
 * those containers and the encodings dict (see _seen.c). None when it does not apply
 * (another value, a key or string starting with '$', an int orjson refuses, members
 * split_map cannot cut): the caller encodes the values as before. */
static PyObject *encode_wide(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t least;
    if (nargs != 3 || (least = PyLong_AsSsize_t(args[2])) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "encode_wide() takes a dict, dumps and a size");
        }
        return NULL;
    }
    PyObject *values = args[0];
    if (!PyDict_CheckExact(values) || PyDict_GET_SIZE(values) < least
            || PyDict_GET_SIZE(values) == 0) {
        Py_RETURN_NONE;
    }
    SeenLog log = {0};
    if (seen_members(&log, values) < 0) {
        seen_clear(&log);
        Py_RETURN_NONE;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value;
    /* As many members as it holds (no Python code runs: it cannot change mid-walk). */
    for (Py_ssize_t left = PyDict_GET_SIZE(values); left > 0; left--) {
        if (!PyDict_Next(values, &position, &key, &value) || !PyUnicode_CheckExact(key)) {
            seen_clear(&log);
            Py_RETURN_NONE;
        }
        PyTypeObject *type = Py_TYPE(value);
        if (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
                || value == Py_None) {
            continue;
        }
        int made = seen_walk(value, 0, &log);
        if (made != 1) {
            seen_clear(&log);
            if (made < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    if (log.failed) {
        seen_clear(&log);
        Py_RETURN_NONE;
    }
    PyObject *out = PyObject_CallOneArg(args[1], values);
    int taken = orjson_answer(out, &log);
    if (taken <= 0) {
        if (taken < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *cut_args[2] = {out, values};
    PyObject *encodings = split_map(module, cut_args, 2);
    Py_DECREF(out);
    if (encodings == NULL || encodings == Py_None) {
        seen_clear(&log);
        if (encodings == NULL) {
            return NULL;
        }
        Py_DECREF(encodings);
        Py_RETURN_NONE;
    }
    /* The encodings dict is seen last (a Wide's log: see wide_from_log). */
    if (seen_members(&log, encodings) < 0 || log.failed) {
        seen_clear(&log);
        Py_DECREF(encodings);
        Py_RETURN_NONE;
    }
    PyObject *wide = wide_from_log(&log, values, encodings);
    if (wide == NULL) {
        Py_DECREF(encodings);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, encodings, wide);
    Py_DECREF(encodings);
    Py_DECREF(wide);
    return pair;
}

/* Whether every key of a dict is an exact str. */
static int exact_str_keys(PyObject *dict)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return 0;
        }
    }
    return 1;
}

/* all_still_encode(values, encodings): still_encodes() of each value of a dict and its
 * key's encoding in the other (exact str keys: a look-up runs no Python code). */
/* Whether a Wide (wide_unchanged: its dicts, borrowed) vouches for key holding value
 * beside encoding: the very value its outputs held under key, beside the very encoding
 * cut for it. Each Wide's two dicts are read side by side with the state (cursors: two
 * per Wide), else looked up; only exact str keys are looked up in them (all theirs are:
 * no Python code runs). */
static int wide_vouches(PyObject *const *wides, Py_ssize_t *cursors, Py_ssize_t count,
                        PyObject *key, PyObject *value, PyObject *encoding)
{
    for (Py_ssize_t index = 0; index < count; index += 2) {
        PyObject *held = side_by_side(wides[index], key, &cursors[index]);
        if (held == NULL) {
            held = PyDict_GetItemWithError(wides[index], key);
        }
        if (held == value && value != NULL) {
            PyObject *cut = side_by_side(wides[index + 1], key, &cursors[index + 1]);
            if (cut == NULL) {
                cut = PyDict_GetItemWithError(wides[index + 1], key);
            }
            if (cut != NULL && cut == encoding) {
                return 1;
            }
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    return 0;
}

/* The most Wides all_still_encode takes (a state holds the newest few). */
#define MOST_WIDES 8

static PyObject *all_still_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 2 && nargs != 3) || !PyDict_CheckExact(args[0])
            || !PyDict_CheckExact(args[1]) || (nargs == 3 && !PyTuple_CheckExact(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "all_still_encode() takes two dicts, and a tuple "
                        "of Wides");
        return NULL;
    }
    /* The Wides (see _seen.c) whose objects all hold what they held: their dicts. */
    PyObject *wides[2 * MOST_WIDES];
    Py_ssize_t cursors[2 * MOST_WIDES] = {0};
    Py_ssize_t wide_count = 0;
    if (nargs == 3) {
        for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(args[2])
                && wide_count < 2 * MOST_WIDES; index++) {
            if (wide_unchanged(PyTuple_GET_ITEM(args[2], index), &wides[wide_count],
                               &wides[wide_count + 1])) {
                wide_count += 2;
            }
        }
    }
    Py_ssize_t position = 0, cursor = 0;
    PyObject *key, *value;
    int keys_checked = 0;
    for (Py_ssize_t left = PyDict_GET_SIZE(args[0]); left > 0; left--) {
        if (!PyDict_Next(args[0], &position, &key, &value)) {
            Py_RETURN_FALSE;
        }
        if (!PyUnicode_CheckExact(key)) {
            Py_RETURN_FALSE;
        }
        PyObject *encoding = side_by_side(args[1], key, &cursor);
        if (encoding != NULL) {
            if (!(wide_count && wide_vouches(wides, cursors, wide_count, key, value, encoding))
                    && !encodes_to(value, encoding)) {
                Py_RETURN_FALSE;
            }
            continue;
        }
        /* Looked up: with every key of the encodings an exact str (checked once), a
         * look-up runs no Python code (no key's own __eq__), so nothing read changes. */
        if (!keys_checked) {
            if (!exact_str_keys(args[1])) {
                Py_RETURN_FALSE;  /* not sure: the caller checks the slow way */
            }
            keys_checked = 1;
        }
        encoding = PyDict_GetItemWithError(args[1], key);
        if (encoding == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        if (!(wide_count && wide_vouches(wides, cursors, wide_count, key, value, encoding))
                && !encodes_to(value, encoding)) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* in_order(mapping): are a dict's keys exact str in ascending (code point) order, the
 * order sorted() gives them? Then a caller needing them sorted has them as they are. The
 * walk runs no Python code (exact str keys compare in C). */
static PyObject *in_order(PyObject *module, PyObject *dict)
{
    if (!PyDict_CheckExact(dict)) {
        PyErr_SetString(PyExc_TypeError, "in_order() takes a dict");
        return NULL;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value, *previous = NULL;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            Py_RETURN_FALSE;
        }
        if (previous != NULL && !key_after(previous, key)) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        previous = key;
    }
    Py_RETURN_TRUE;
}

/* sorted_keys(mapping): sorted(mapping) for a dict of exact str keys, in one walk when
 * they are in order but for a few: a state's keys are its inputs first, then what the
 * steps wrote (mostly in order), so a commit's keys are a long ascending run and a
 * handful of others. The longest run stays as it is; the others (at most
 * SORTED_FEW_OTHERS) are sorted by insertion and placed in it by binary search, moved
 * in the list's own array (no reference counted again). Anything else is left to
 * list.sort(). None when a key is not an exact str (the caller sorts, or names it). No
 * Python code runs (exact str keys compare in C). */
#define SORTED_FEW_RUNS 8
#define SORTED_FEW_OTHERS 64

static PyObject *sorted_keys(PyObject *module, PyObject *dict)
{
    if (!PyDict_CheckExact(dict)) {
        PyErr_SetString(PyExc_TypeError, "sorted_keys() takes a dict");
        return NULL;
    }
    Py_ssize_t count = PyDict_GET_SIZE(dict);
    PyObject *list = PyList_New(count);
    if (list == NULL) {
        return NULL;
    }
    /* Where each ascending run starts (past SORTED_FEW_RUNS: too many to place). */
    Py_ssize_t starts[SORTED_FEW_RUNS + 1];
    int runs = 0;
    Py_ssize_t position = 0, index = 0;
    PyObject *key, *value, *previous = NULL;
    for (; index < count && PyDict_Next(dict, &position, &key, &value); index++) {
        if (!PyUnicode_CheckExact(key)) {
            Py_DECREF(list);
            Py_RETURN_NONE;
        }
        if (previous == NULL || !key_after(previous, key)) {
            if (PyErr_Occurred()) {
                Py_DECREF(list);
                return NULL;
            }
            if (runs <= SORTED_FEW_RUNS) {
                starts[runs] = index;
            }
            runs++;
        }
        Py_INCREF(key);
        PyList_SET_ITEM(list, index, key);
        previous = key;
    }
    if (index != count) {  /* (cannot happen: no Python code ran) */
        Py_DECREF(list);
        PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
        return NULL;
    }
    if (runs <= 1) {
        return list;
    }
    Py_ssize_t longest = 0, first = 0, end = count;
    if (runs <= SORTED_FEW_RUNS) {
        for (int run = 0; run < runs; run++) {
            Py_ssize_t stop = run + 1 < runs ? starts[run + 1] : count;
            if (stop - starts[run] > longest) {
                longest = stop - starts[run];
                first = starts[run];
                end = stop;
            }
        }
    }
    Py_ssize_t others = count - longest;
    PyObject **items = ((PyListObject *)list)->ob_item;
    PyObject **merged = runs <= SORTED_FEW_RUNS && others <= SORTED_FEW_OTHERS
        ? PyMem_Malloc(sizeof(PyObject *) * (size_t)count) : NULL;
    if (merged == NULL) {
        if (PyList_Sort(list) < 0) {
            Py_DECREF(list);
            return NULL;
        }
        return list;
    }
    /* The others, sorted by insertion (borrowed: the list holds them). */
    PyObject *few[SORTED_FEW_OTHERS];
    Py_ssize_t taken = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i == first) {
            i = end - 1;
            continue;
        }
        Py_ssize_t at = taken++;
        while (at > 0 && key_after(items[i], few[at - 1])) {
            few[at] = few[at - 1];
            at--;
        }
        few[at] = items[i];
    }
    /* Merged: each of the few after the run's keys before it (found by bisection). */
    Py_ssize_t out = 0, from = first;
    for (Py_ssize_t j = 0; j < taken; j++) {
        Py_ssize_t low = from, high = end;
        while (low < high) {
            Py_ssize_t middle = low + (high - low) / 2;
            if (key_after(items[middle], few[j])) {
                low = middle + 1;
            }
            else {
                high = middle;
            }
        }
        memcpy(merged + out, items + from, sizeof(PyObject *) * (size_t)(low - from));
        out += low - from;
        merged[out++] = few[j];
        from = low;
    }
    memcpy(merged + out, items + from, sizeof(PyObject *) * (size_t)(end - from));
    memcpy(items, merged, sizeof(PyObject *) * (size_t)count);
    PyMem_Free(merged);
    if (PyErr_Occurred()) {  /* (a comparison failed: not for exact str) */
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

/* members_match(whole, keys, encodings): is whole exactly {"key":<encoding>,...}, keys
 * in the order given (sorted), each key a str JSON writes as it is and each encoding the
 * bytes encodings holds for it? Then, whole being orjson's encoding of a map with these
 * keys, each of its values encodes to its own encoding (an object parses one way). Only
 * memcmp: nothing is scanned or allocated. A lookup of an exact str key runs no Python
 * code; the keys list is read by index against its current size. */
static int member_matches(const char *data, Py_ssize_t size, Py_ssize_t *at, PyObject *key,
                          PyObject *encodings, int first)
{
    Py_ssize_t length;
    const char *text = PyUnicode_AsUTF8AndSize(key, &length);
    if (text == NULL) {
        PyErr_Clear();  /* a lone surrogate: not written as it is */
        return 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            return 0;
        }
    }
    /* (The key is held by the caller: a lookup meeting a key of another type may run
     * its __eq__.) */
    PyObject *raw = PyDict_GetItemWithError(encodings, key);
    if (raw == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!PyBytes_CheckExact(raw)) {
        return 0;
    }
    Py_ssize_t raw_size = PyBytes_GET_SIZE(raw), here = *at;
    /* ',' (after the first), '"', the key, '":', the encoding */
    if ((first ? 0 : 1) + 3 + length + raw_size > size - here) {
        return 0;
    }
    if (!first && data[here++] != ',') {
        return 0;
    }
    if (data[here] != '"' || memcmp(data + here + 1, text, (size_t)length) != 0
            || data[here + 1 + length] != '"' || data[here + 2 + length] != ':') {
        return 0;
    }
    here += 3 + length;
    if (memcmp(data + here, PyBytes_AS_STRING(raw), (size_t)raw_size) != 0) {
        return 0;
    }
    *at = here + raw_size;
    return 1;
}

/* members_match(whole, keys, encodings): is whole exactly {"key":<encoding>,...}, keys
 * in the order given (sorted), each key a str JSON writes as it is and each encoding the
 * bytes encodings holds for it? Then, whole being orjson's encoding of a map with these
 * keys, each of its values encodes to its own encoding (an object parses one way). Only
 * memcmp: nothing is scanned or allocated. The keys list is read by index against its
 * current size, each key held while it is looked up. */
static PyObject *members_match(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyList_CheckExact(args[1])
            || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "members_match() takes bytes, a list and a dict");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]), at = 1;
    PyObject *keys = args[1];
    if (size < 2 || data[0] != '{') {
        Py_RETURN_FALSE;
    }
    for (Py_ssize_t index = 0; index < PyList_GET_SIZE(keys); index++) {
        PyObject *key = PyList_GET_ITEM(keys, index);
        if (!PyUnicode_CheckExact(key)) {
            Py_RETURN_FALSE;
        }
        Py_INCREF(key);
        int matched = member_matches(data, size, &at, key, args[2], index == 0);
        Py_DECREF(key);
        if (matched < 0) {
            return NULL;
        }
        if (!matched) {
            Py_RETURN_FALSE;
        }
    }
    if (at != size - 1 || data[at] != '}') {
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* digest_map(entries, digest_type): the canonical encoding of the map tree naming
 * entries' digests, {"entries":{"key":{"$digest":"<hex>"},...},"type":"map"}, as
 * codec.encode_digest_map writes it through orjson (keys sorted by code point, which
 * is the order of their UTF-8 bytes). None (no exception) when a key is not a plain
 * str (see plain_key) or a value is not exactly digest_type with 32 raw bytes: the
 * caller then encodes it in Python. Trees are encoded for every snapshot a run stores
 * (two a step), where the Python path builds a dict and a hex str per key. */
#define DIGEST_MAP_HEAD "{\"entries\":{"
#define DIGEST_MAP_TAIL "},\"type\":\"map\"}"
#define DIGEST_ENTRY_HEAD ":{\"$digest\":\""
static PyObject *raw_name = NULL;

static PyObject *digest_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_CheckExact(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "digest_map() takes a dict and a type");
        return NULL;
    }
    PyObject *entries = args[0];
    PyTypeObject *digest_type = (PyTypeObject *)args[1];
    PyObject *keys = PyDict_Keys(entries);
    if (keys == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(keys);
    /* Exact str keys compare in C: no Python code runs while sorting them. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i))) {
            Py_DECREF(keys);
            Py_RETURN_NONE;
        }
    }
    if (PyList_Sort(keys) < 0) {
        Py_DECREF(keys);
        return NULL;
    }
    PyObject *raws = PyTuple_New(count);
    if (raws == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    Py_ssize_t size = (Py_ssize_t)(sizeof(DIGEST_MAP_HEAD) - 1 + sizeof(DIGEST_MAP_TAIL) - 1);
    Py_ssize_t key_size;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *value = PyDict_GetItemWithError(entries, key);  /* borrowed */
        if (value == NULL || plain_key(key, &key_size) == NULL
                || Py_TYPE(value) != digest_type) {
            goto fallback;
        }
        PyObject *raw = PyObject_GenericGetAttr(value, raw_name);
        if (raw == NULL) {
            PyErr_Clear();
            goto fallback;
        }
        PyTuple_SET_ITEM(raws, i, raw);
        if (!PyBytes_CheckExact(raw) || PyBytes_GET_SIZE(raw) != 32) {
            goto fallback;
        }
        /* "key":{"$digest":"<64 hex>"} and a comma */
        size += key_size + 2 + (Py_ssize_t)(sizeof(DIGEST_ENTRY_HEAD) - 1) + 64 + 2
            + (i > 0);
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL) {
        Py_DECREF(keys);
        Py_DECREF(raws);
        return NULL;
    }
    static const char hex[] = "0123456789abcdef";
    char *out = PyBytes_AS_STRING(joined);
    memcpy(out, DIGEST_MAP_HEAD, sizeof(DIGEST_MAP_HEAD) - 1);
    out += sizeof(DIGEST_MAP_HEAD) - 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *text = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(keys, i), &key_size);
        const unsigned char *raw =
            (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(raws, i));
        if (i > 0) {
            *out++ = ',';
        }
        *out++ = '"';
        memcpy(out, text, (size_t)key_size);
        out += key_size;
        *out++ = '"';
        memcpy(out, DIGEST_ENTRY_HEAD, sizeof(DIGEST_ENTRY_HEAD) - 1);
        out += sizeof(DIGEST_ENTRY_HEAD) - 1;
        for (int b = 0; b < 32; b++) {
            *out++ = hex[raw[b] >> 4];
            *out++ = hex[raw[b] & 15];
        }
        *out++ = '"';
        *out++ = '}';
    }
    memcpy(out, DIGEST_MAP_TAIL, sizeof(DIGEST_MAP_TAIL) - 1);
    Py_DECREF(keys);
    Py_DECREF(raws);
    return joined;
fallback:
    Py_DECREF(keys);
    Py_DECREF(raws);
    Py_RETURN_NONE;
}

/* Whether instances of digest_type may be made as new_digest makes them (tp_alloc, then
 * the "raw" slot set, its tp_new skipped): a class written in Python on object alone, whose
 * "raw" is a __slots__ member. A builtin type's zeroed instance is not a valid one (freeing
 * or using it crashes). The last type accepted is kept (a reference), so the check costs a
 * pointer comparison after the first call. */
static PyTypeObject *accepted_digest_type = NULL;

static int plain_digest_type(PyTypeObject *digest_type)
{
    if (digest_type == accepted_digest_type) {
        return 1;
    }
    for (PyTypeObject *step = digest_type; step != &PyBaseObject_Type; step = step->tp_base) {
        if (step == NULL || !PyType_HasFeature(step, Py_TPFLAGS_HEAPTYPE)
                || step->tp_itemsize != 0) {
            goto refused;
        }
    }
    PyObject *slot = _PyType_Lookup(digest_type, raw_name);  /* borrowed */
    if (slot == NULL || !Py_IS_TYPE(slot, &PyMemberDescr_Type)) {
        goto refused;
    }
    Py_INCREF(digest_type);
    Py_XSETREF(accepted_digest_type, digest_type);
    return 1;
refused:
    PyErr_SetString(PyExc_TypeError, "a digest type is a class on object with a 'raw' slot");
    return 0;
}

/* new_digest(digest_type, raw): digest_type's instance holding raw in its "raw" slot,
 * as object.__new__ and object.__setattr__ make it (digest.compute_digest makes one per
 * object hashed, ~20 a recorded run; the two calls cost ~2,500 instructions in Python). */
static PyObject *new_digest(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "new_digest() takes a type and bytes");
        return NULL;
    }
    PyTypeObject *digest_type = (PyTypeObject *)args[0];
    if (!plain_digest_type(digest_type)) {
        return NULL;
    }
    PyObject *made = digest_type->tp_alloc(digest_type, 0);
    if (made == NULL) {
        return NULL;
    }
    if (PyObject_GenericSetAttr(made, raw_name, args[1]) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}

/* ------------------------------------------------------------------ BLAKE3, one chunk
 *
 * small_digest(digest_type, tag, payload): the BLAKE3-256 hash of tag + payload, as a
 * digest_type made as new_digest makes it, when the two together fit in one BLAKE3 chunk
 * (1,024 bytes); None otherwise (the caller hashes with the blake3 package). Written from
 * the BLAKE3 specification: a single chunk is its own root, so its hash is the chaining
 * value of its last block compressed with the ROOT flag. Most objects a run stores are
 * that small (values, small trees), and the package's binding costs several times what
 * hashing one takes. Tests hold it to the package's answers for every length. */
#define B3_BLOCK 64
#define B3_CHUNK 1024
#define B3_CHUNK_START 1u
#define B3_CHUNK_END 2u
#define B3_ROOT 8u

static const uint32_t b3_iv[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

static inline uint32_t b3_rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

#define B3_G(a, b, c, d, x, y) do { \
    v[a] = v[a] + v[b] + (x); v[d] = b3_rotr(v[d] ^ v[a], 16); \
    v[c] = v[c] + v[d];       v[b] = b3_rotr(v[b] ^ v[c], 12); \
    v[a] = v[a] + v[b] + (y); v[d] = b3_rotr(v[d] ^ v[a], 8); \
    v[c] = v[c] + v[d];       v[b] = b3_rotr(v[b] ^ v[c], 7); \
} while (0)

#define B3_ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    do { \
        B3_G(0, 4, 8, 12, m[s0], m[s1]); \
        B3_G(1, 5, 9, 13, m[s2], m[s3]); \
        B3_G(2, 6, 10, 14, m[s4], m[s5]); \
        B3_G(3, 7, 11, 15, m[s6], m[s7]); \
        B3_G(0, 5, 10, 15, m[s8], m[s9]); \
        B3_G(1, 6, 11, 12, m[s10], m[s11]); \
        B3_G(2, 7, 8, 13, m[s12], m[s13]); \
        B3_G(3, 4, 9, 14, m[s14], m[s15]); \
    } while (0)

/* Compress one block into the chaining value cv (the first eight output words). */
static void b3_compress(uint32_t cv[8], const unsigned char block[B3_BLOCK],
                        uint32_t block_len, uint32_t flags)
{
    uint32_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        const unsigned char *p = block + 4 * i;
        m[i] = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
            | ((uint32_t)p[3] << 24);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = cv[i];
    }
    v[8] = b3_iv[0]; v[9] = b3_iv[1]; v[10] = b3_iv[2]; v[11] = b3_iv[3];
    v[12] = 0;  /* the chunk counter's low and high words: the first chunk is 0 */
    v[13] = 0;
    v[14] = block_len;
    v[15] = flags;
    /* The seven rounds, each reading the message words in the order the permutation,
     * applied round after round, puts them (written out: the indexes are constants). */
    B3_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    B3_ROUND(2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8);
    B3_ROUND(3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1);
    B3_ROUND(10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6);
    B3_ROUND(12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4);
    B3_ROUND(9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7);
    B3_ROUND(11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13);
    for (int i = 0; i < 8; i++) {
        cv[i] = v[i] ^ v[i + 8];
    }
}

/* The hash of the concatenation of the parts (together at most one chunk) into out. */
static void b3_hash_chunk(const unsigned char *head, Py_ssize_t head_size,
                          const unsigned char *data, Py_ssize_t data_size,
                          unsigned char out[32])
{
    uint32_t cv[8];
    memcpy(cv, b3_iv, sizeof(cv));
    Py_ssize_t total = head_size + data_size;
    Py_ssize_t done = 0;
    unsigned char block[B3_BLOCK];
    uint32_t flags = B3_CHUNK_START;
    for (;;) {
        Py_ssize_t left = total - done;
        Py_ssize_t take = left < B3_BLOCK ? left : B3_BLOCK;
        /* Gather the block from the two parts, zero-padded. */
        Py_ssize_t filled = 0;
        if (done < head_size) {
            filled = head_size - done < take ? head_size - done : take;
            memcpy(block, head + done, (size_t)filled);
        }
        if (filled < take) {
            memcpy(block + filled, data + (done + filled - head_size), (size_t)(take - filled));
        }
        if (take < B3_BLOCK) {
            memset(block + take, 0, (size_t)(B3_BLOCK - take));
        }
        done += take;
        int last = done == total;
        b3_compress(cv, block, (uint32_t)take,
                    flags | (last ? (B3_CHUNK_END | B3_ROOT) : 0u));
        if (last) {
            break;
        }
        flags = 0;
    }
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)cv[i];
        out[4 * i + 1] = (unsigned char)(cv[i] >> 8);
        out[4 * i + 2] = (unsigned char)(cv[i] >> 16);
        out[4 * i + 3] = (unsigned char)(cv[i] >> 24);
    }
}

/* A digest_type instance holding raw (a new reference to it is taken). */
static PyObject *make_digest(PyTypeObject *digest_type, PyObject *raw)
{
    if (!plain_digest_type(digest_type)) {
        return NULL;
    }
    PyObject *made = digest_type->tp_alloc(digest_type, 0);
    if (made == NULL) {
        return NULL;
    }
    if (PyObject_GenericSetAttr(made, raw_name, raw) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}

/* The digest of payload stored as the kind whose tag is tag (both bytes): hashed here
 * when the two fit in one chunk, else by compute(kind, payload) (digest.compute_digest). */
static PyObject *hash_digest(PyTypeObject *digest_type, PyObject *kind, PyObject *tag,
                             PyObject *payload, PyObject *compute)
{
    if (PyBytes_GET_SIZE(tag) + PyBytes_GET_SIZE(payload) > B3_CHUNK) {
        PyObject *call_args[2] = {kind, payload};
        return PyObject_Vectorcall(compute, call_args, 2, NULL);
    }
    PyObject *raw = PyBytes_FromStringAndSize(NULL, 32);
    if (raw == NULL) {
        return NULL;
    }
    b3_hash_chunk((const unsigned char *)PyBytes_AS_STRING(tag), PyBytes_GET_SIZE(tag),
                  (const unsigned char *)PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                  (unsigned char *)PyBytes_AS_STRING(raw));
    PyObject *made = make_digest(digest_type, raw);
    Py_DECREF(raw);
    return made;
}

static PyObject *small_digest(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyBytes_CheckExact(args[1])
            || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "small_digest() takes a type and two bytes");
        return NULL;
    }
    if (!plain_digest_type((PyTypeObject *)args[0])) {
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[1]) + PyBytes_GET_SIZE(args[2]) > B3_CHUNK) {
        Py_RETURN_NONE;
    }
    return hash_digest((PyTypeObject *)args[0], NULL, args[1], args[2], NULL);
}

/* put_map(entries, known, pending, held, digest_type, kinds, limits, compute): what
 * ValueDigests.put_map does in Python (engine/value_digests.py), in one call: each
 * Inline entry's value digested (from known, the run's kept digests, else hashed and
 * kept when its payload is at most limits[0] bytes, known cleared first when it holds
 * limits[1]), the map tree of the entries' digests encoded (digest_map) and digested,
 * and the values then the tree queued in pending (raw digest -> (kind, payload)) unless
 * held or queued already, as WriteBatch.put_known queues them. kinds: (value kind, its
 * tag, tree kind, its tag); limits: (kept payload, most kept, largest payload queued
 * without a size check); compute: digest.compute_digest, for payloads over one BLAKE3
 * chunk. Returns (tree digest, objects offered, bytes offered), or None, having queued
 * nothing, when the Python path must answer (a key digest_map leaves to Python, an
 * entry neither an Inline nor a digest, a payload past limits[2]); known may then hold
 * digests it computed, which are right. */
static PyObject *put_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1])
            || !PyDict_CheckExact(args[2]) || !PyAnySet_Check(args[3])
            || !PyType_Check(args[4]) || !PyTuple_CheckExact(args[5])
            || PyTuple_GET_SIZE(args[5]) != 4 || !PyTuple_CheckExact(args[6])
            || PyTuple_GET_SIZE(args[6]) != 3) {
        PyErr_SetString(PyExc_TypeError, "put_map() takes dict, dict, dict, set, type, "
                        "(kind, tag, kind, tag), (int, int, int), callable");
        return NULL;
    }
    PyObject *entries = args[0], *known = args[1], *pending = args[2], *held = args[3];
    PyTypeObject *digest_type = (PyTypeObject *)args[4];
    if (!plain_digest_type(digest_type)) {
        return NULL;
    }
    PyObject *value_kind = PyTuple_GET_ITEM(args[5], 0);
    PyObject *value_tag = PyTuple_GET_ITEM(args[5], 1);
    PyObject *tree_kind = PyTuple_GET_ITEM(args[5], 2);
    PyObject *tree_tag = PyTuple_GET_ITEM(args[5], 3);
    PyObject *compute = args[7];
    if (!PyBytes_CheckExact(value_tag) || !PyBytes_CheckExact(tree_tag)) {
        PyErr_SetString(PyExc_TypeError, "put_map(): a kind's tag is bytes");
        return NULL;
    }
    Py_ssize_t kept = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[6], 0));
    Py_ssize_t most = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[6], 1));
    Py_ssize_t largest = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[6], 2));
    if (PyErr_Occurred()) {
        return NULL;
    }
    /* Entries are copied first: compute (Python) may run while they are walked. */
    PyObject *items = PyDict_Items(entries);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    PyObject *digests = PyDict_New();
    /* payload, digest, payload, digest... of the values queued, then the tree's */
    PyObject *queued = PyList_New(0);
    PyObject *tree_payload = NULL, *tree = NULL, *result = NULL;
    if (digests == NULL || queued == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *entry = PyTuple_GET_ITEM(pair, 1);
        if (Py_TYPE(entry) != &InlineType) {
            if (Py_TYPE(entry) != digest_type) {
                goto fallback;
            }
            if (PyDict_SetItem(digests, key, entry) < 0) {
                goto done;
            }
            continue;
        }
        PyObject *payload = ((InlineObject *)entry)->payload;
        if (!PyBytes_CheckExact(payload) || PyBytes_GET_SIZE(payload) > largest) {
            goto fallback;
        }
        PyObject *digest = PyDict_GetItemWithError(known, payload);
        if (digest != NULL) {
            Py_INCREF(digest);
        }
        else if (PyErr_Occurred()) {
            goto done;
        }
        else {
            digest = hash_digest(digest_type, value_kind, value_tag, payload, compute);
            if (digest == NULL) {
                goto done;
            }
            if (PyBytes_GET_SIZE(payload) <= kept) {
                if (PyDict_GET_SIZE(known) >= most) {
                    PyDict_Clear(known);
                }
                if (PyDict_SetItem(known, payload, digest) < 0) {
                    Py_DECREF(digest);
                    goto done;
                }
            }
        }
        int failed = PyDict_SetItem(digests, key, digest) < 0
            || PyList_Append(queued, payload) < 0 || PyList_Append(queued, digest) < 0;
        Py_DECREF(digest);
        if (failed) {
            goto done;
        }
    }
    PyObject *map_args[2] = {digests, (PyObject *)digest_type};
    tree_payload = digest_map(module, map_args, 2);
    if (tree_payload == NULL) {
        goto done;
    }
    if (tree_payload == Py_None || PyBytes_GET_SIZE(tree_payload) > largest) {
        goto fallback;
    }
    tree = hash_digest(digest_type, tree_kind, tree_tag, tree_payload, compute);
    if (tree == NULL || PyList_Append(queued, tree_payload) < 0
            || PyList_Append(queued, tree) < 0) {
        goto done;
    }
    /* Every digest is known: queue them all (nothing fails after this but memory). */
    Py_ssize_t total = PyList_GET_SIZE(queued), size = 0;
    for (Py_ssize_t i = 0; i < total; i += 2) {
        PyObject *payload = PyList_GET_ITEM(queued, i);
        PyObject *raw = PyObject_GenericGetAttr(PyList_GET_ITEM(queued, i + 1), raw_name);
        if (raw == NULL) {
            goto done;
        }
        size += PyBytes_GET_SIZE(payload);
        int found = PySet_Contains(held, raw);
        if (found == 0) {
            found = PyDict_Contains(pending, raw);
        }
        if (found == 0) {
            PyObject *queued_item = PyTuple_Pack(2, i + 2 < total ? value_kind : tree_kind,
                                                 payload);
            found = queued_item == NULL ? -1 : PyDict_SetItem(pending, raw, queued_item);
            Py_XDECREF(queued_item);
        }
        Py_DECREF(raw);
        if (found < 0) {
            goto done;
        }
    }
    result = Py_BuildValue("(Onn)", tree, total / 2, size);
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_DECREF(items);
    Py_XDECREF(digests);
    Py_XDECREF(queued);
    Py_XDECREF(tree_payload);
    Py_XDECREF(tree);
    return result;
}

/* iso_time(value): value.isoformat() for a datetime, written here when it is exactly a
 * datetime, naive or in UTC (datetime.UTC): "YYYY-MM-DDTHH:MM:SS", ".ffffff" unless the
 * microseconds are 0, "+00:00" in UTC; anything else is value.isoformat() itself. A
 * recorded run stamps its start and each step's: datetime's own isoformat formats
 * through PyUnicode_FromFormat, ~10k instructions a call. */
static char *two_digits(char *out, int number)
{
    *out++ = (char)('0' + number / 10);
    *out++ = (char)('0' + number % 10);
    return out;
}

static PyObject *iso_time(PyObject *module, PyObject *value)
{
    if (PyDateTimeAPI == NULL || !PyDateTime_CheckExact(value)) {
        return PyObject_CallMethod(value, "isoformat", NULL);
    }
    PyObject *zone = ((_PyDateTime_BaseTZInfo *)value)->hastzinfo
        ? ((PyDateTime_DateTime *)value)->tzinfo : Py_None;
    if (zone != Py_None && zone != PyDateTime_TimeZone_UTC) {
        return PyObject_CallMethod(value, "isoformat", NULL);
    }
    char text[40];
    char *out = text;
    int year = PyDateTime_GET_YEAR(value);
    *out++ = (char)('0' + year / 1000);
    *out++ = (char)('0' + year / 100 % 10);
    out = two_digits(out, year % 100);
    *out++ = '-';
    out = two_digits(out, PyDateTime_GET_MONTH(value));
    *out++ = '-';
    out = two_digits(out, PyDateTime_GET_DAY(value));
    *out++ = 'T';
    out = two_digits(out, PyDateTime_DATE_GET_HOUR(value));
    *out++ = ':';
    out = two_digits(out, PyDateTime_DATE_GET_MINUTE(value));
    *out++ = ':';
    out = two_digits(out, PyDateTime_DATE_GET_SECOND(value));
    int micro = PyDateTime_DATE_GET_MICROSECOND(value);
    if (micro != 0) {
        *out++ = '.';
        for (int place = 100000; place > 0; place /= 10) {
            *out++ = (char)('0' + micro / place % 10);
        }
    }
    if (zone != Py_None) {
        memcpy(out, "+00:00", 6);
        out += 6;
    }
    return PyUnicode_FromStringAndSize(text, out - text);
}

static PyObject *digest_key = NULL;

/* Each character's value as a lowercase hex digit (0-15), or 0x10 when it is none. */
static unsigned char hex_nibbles[256];

static void fill_hex_nibbles(void)
{
    for (int c = 0; c < 256; c++) {
        hex_nibbles[c] = c >= '0' && c <= '9' ? (unsigned char)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned char)(c - 'a' + 10) : 0x10;
    }
}

/* digest_of_tag(value, digest_type): the digest a codec tag {"$digest": "<64 lowercase
 * hex>"} names, as a digest_type made by new_digest; None when value is anything else
 * (the caller's own check then says why). A loaded run record holds ~25 such tags; in
 * Python each cost a fromhex, a hex and a call (shapes._digest). */
static PyObject *digest_of_tag(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "digest_of_tag() takes a value and a type");
        return NULL;
    }
    PyObject *value = args[0];
    if (!PyDict_CheckExact(value) || PyDict_GET_SIZE(value) != 1) {
        Py_RETURN_NONE;
    }
    PyObject *text = PyDict_GetItemWithError(value, digest_key);  /* borrowed */
    if (text == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyUnicode_CheckExact(text) || PyUnicode_READY(text) < 0 ||
        PyUnicode_GET_LENGTH(text) != 64 || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) {
        Py_RETURN_NONE;
    }
    const Py_UCS1 *hex = PyUnicode_1BYTE_DATA(text);
    unsigned char raw[32];
    /* A table, two characters a byte, one check at the end: a run record holds ~60 tags, and
     * the branches for each character cost ~1k instructions a tag. */
    unsigned char bad = 0;
    for (int i = 0; i < 32; i++) {
        unsigned char high = hex_nibbles[hex[2 * i]], low = hex_nibbles[hex[2 * i + 1]];
        bad |= (unsigned char)((high | low) & 0x10);
        raw[i] = (unsigned char)((high << 4) | (low & 0x0F));
    }
    if (bad) {
        Py_RETURN_NONE;  /* capitals, spaces, anything else: not as pinrun writes it */
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)raw, 32);
    if (bytes == NULL) {
        return NULL;
    }
    PyObject *pair[2] = {args[1], bytes};
    PyObject *made = new_digest(module, pair, 2);
    Py_DECREF(bytes);
    return made;
}

/* One field of record_fields: is item taken as it is, or as the digest its tag names,
 * without its spec? 1 with *made set (a new reference), 0 when the spec must decide,
 * -1 on an error. field: (name, spec, kept types, tagged, allowed strs or None, minimum
 * int or None, list of strs). */
static int field_fast(PyObject *module, PyObject *field, PyObject *item, PyObject *digest_type,
                      PyObject **made)
{
    PyObject *kept = PyTuple_GET_ITEM(field, 2);
    int found = PySet_Contains(kept, (PyObject *)Py_TYPE(item));
    if (found != 0) {
        if (found > 0) {
            Py_INCREF(item);
            *made = item;
        }
        return found;
    }
    if (PyTuple_GET_ITEM(field, 3) == Py_True) {
        PyObject *pair[2] = {item, digest_type};
        PyObject *digest = digest_of_tag(module, pair, 2);
        if (digest == NULL) {
            return -1;
        }
        if (digest != Py_None) {
            *made = digest;
            return 1;
        }
        Py_DECREF(digest);
        return 0;
    }
    PyObject *allowed = PyTuple_GET_ITEM(field, 4);
    if (allowed != Py_None && PyUnicode_CheckExact(item)) {
        found = PySet_Contains(allowed, item);
        if (found > 0) {
            Py_INCREF(item);
            *made = item;
        }
        return found;
    }
    PyObject *minimum = PyTuple_GET_ITEM(field, 5);
    if (minimum != Py_None && PyLong_CheckExact(item)) {
        found = PyObject_RichCompareBool(item, minimum, Py_GE);
        if (found > 0) {
            Py_INCREF(item);
            *made = item;
        }
        return found;
    }
    if (PyTuple_GET_ITEM(field, 6) == Py_True && PyList_CheckExact(item)) {
        Py_ssize_t count = PyList_GET_SIZE(item);
        for (Py_ssize_t i = 0; i < count; i++) {
            if (!PyUnicode_CheckExact(PyList_GET_ITEM(item, i))) {
                return 0;
            }
        }
        *made = PyList_GetSlice(item, 0, count);
        return *made == NULL ? -1 : 1;
    }
    return 0;
}

/* Fill out from value's fields (a tuple of field tuples; optional: absent is None). */
static int fields_into(PyObject *module, PyObject *value, PyObject *fields, int required,
                       PyObject *digest_type, PyObject *out)
{
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    PyObject *empty = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyTuple_GET_ITEM(fields, i);
        PyObject *name = PyTuple_GET_ITEM(field, 0);
        PyObject *item = PyDict_GetItemWithError(value, name);  /* borrowed */
        PyObject *made = NULL;
        if (item == NULL) {
            if (PyErr_Occurred() || required) {
                Py_XDECREF(empty);
                return PyErr_Occurred() ? -1 : 0;  /* missing: the spec's walk says so */
            }
            Py_INCREF(Py_None);
            made = Py_None;
        } else {
            int fast = field_fast(module, field, item, digest_type, &made);
            if (fast < 0) {
                Py_XDECREF(empty);
                return -1;
            }
            if (fast == 0) {
                if (empty == NULL && (empty = PyUnicode_FromStringAndSize("", 0)) == NULL) {
                    return -1;
                }
                PyObject *call[2] = {item, empty};
                made = PyObject_Vectorcall(PyTuple_GET_ITEM(field, 1), call, 2, NULL);
                if (made == NULL) {
                    Py_XDECREF(empty);
                    return -1;
                }
            }
        }
        int set = PyDict_SetItem(out, name, made);
        Py_DECREF(made);
        if (set < 0) {
            Py_XDECREF(empty);
            return -1;
        }
    }
    Py_XDECREF(empty);
    return 1;
}

/* record_fields(value, required, optional, digest_type): a shapes._Record's walk of an
 * exact dict, its fields in the record's order (see shapes._fast_paths); None when a
 * required field is missing (the Python walk then says which). A spec's error passes
 * through as it is raised. */
static PyObject *record_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_CheckExact(args[1]) || !PyTuple_CheckExact(args[2]) ||
        !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "record_fields() takes a value, two tuples of fields and a type");
        return NULL;
    }
    if (!PyDict_CheckExact(args[0])) {
        Py_RETURN_NONE;
    }
    PyObject *fields[2] = {args[1], args[2]};
    for (int which = 0; which < 2; which++) {
        Py_ssize_t count = PyTuple_GET_SIZE(fields[which]);
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *field = PyTuple_GET_ITEM(fields[which], i);
            if (!PyTuple_CheckExact(field) || PyTuple_GET_SIZE(field) != 7 ||
                !PyUnicode_CheckExact(PyTuple_GET_ITEM(field, 0)) ||
                !PyAnySet_CheckExact(PyTuple_GET_ITEM(field, 2)) ||
                (PyTuple_GET_ITEM(field, 4) != Py_None &&
                 !PyAnySet_CheckExact(PyTuple_GET_ITEM(field, 4))) ||
                (PyTuple_GET_ITEM(field, 5) != Py_None &&
                 !PyLong_CheckExact(PyTuple_GET_ITEM(field, 5)))) {
                PyErr_SetString(PyExc_TypeError, "record_fields(): a field is not "
                                "(name, spec, types, tagged, allowed, minimum, strings)");
                return NULL;
            }
        }
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (int which = 0; which < 2; which++) {
        int done = fields_into(module, args[0], fields[which], which == 0, args[3], out);
        if (done <= 0) {
            Py_DECREF(out);
            if (done < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    return out;
}

/* dict_version(d): d's version tag, which changes whenever d does (a new number from a
 * process-wide counter: the same tag means the very same keys, values and order); None
 * where this Python has none to read (see _seen.h). pinned_modules asks it of sys.modules
 * to skip listing its thousand names at every pinned replay when none came or went. */
static PyObject *dict_version(PyObject *module, PyObject *dict)
{
    (void)module;
    if (!PyDict_CheckExact(dict)) {
        PyErr_SetString(PyExc_TypeError, "dict_version() takes a dict");
        return NULL;
    }
#if SEEN_DICT_TAGS
    uint64_t tag = seen_dict_tag(dict);
    if (tag != 0) {
        return PyLong_FromUnsignedLongLong(tag);
    }
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dict_version", dict_version, METH_O,
     "The dict's version tag (changes whenever the dict does), or None where unread."},
    {"record_fields", (PyCFunction)(void (*)(void))record_fields, METH_FASTCALL,
     "(value, required, optional, digest_type): a shapes._Record's fields of an exact "
     "dict, each taken as it is, read from its digest tag, or checked by its spec; None "
     "when a required field is missing or value is not an exact dict."},
    {"digest_of_tag", (PyCFunction)(void (*)(void))digest_of_tag, METH_FASTCALL,
     "(value, digest_type): the digest_type a {\"$digest\": \"<64 lowercase hex>\"} tag "
     "names, or None when value is not exactly such a tag."},
    {"plain", plain, METH_O,
     "True when a dict or list holds only JSON types orjson writes losslessly."},
    {"page_cuts", (PyCFunction)(void (*)(void))page_cuts, METH_FASTCALL,
     "(members, [(index, end), ...]): where a canonical JSON object's keys' CRC-32 "
     "and a mask cut it into pages; None when it is not a plain object."},
    {"inline_entries", (PyCFunction)(void (*)(void))inline_entries, METH_FASTCALL,
     "(entries, rest): the Inline entry of each value whose encoding is known and small; "
     "rest lists the other keys; None when a key is not a str."},
    {"inline_into", (PyCFunction)(void (*)(void))inline_into, METH_FASTCALL,
     "Put the Inline entry of every value of state (encoded in payloads, no larger than "
     "limit) into the dict into; their total size, or None (into untouched) when one "
     "cannot be made."},
    {"join_members", join_members, METH_O,
     "{\"key\":<encoding>,...} of a dict of encodings, or None when a key needs escaping "
     "or starts with '$', or an encoding is not bytes holding one value."},
    {"split_values", split_values, METH_O,
     "The encodings of a JSON object's values, in its order; None when it is not one."},
    {"split_map", (PyCFunction)(void (*)(void))split_map, METH_FASTCALL,
     "{key: encoding} of a JSON object whose members are a dict's keys in its order; "
     "None when they are not."},
    {"inline_sizes", inline_sizes, METH_O,
     "(bytes of the inline entries' members, count of the other entries)."},
    {"page_plan", (PyCFunction)(void (*)(void))page_plan, METH_FASTCALL,
     "The pages of sorted keys: an inline page's payload, or the tuple of keys stored as "
     "a map (a key with its own object, or a page encoding past the split size). With a "
     "cache (a dict), an inline page is a record [entries, payload, digest or None] "
     "kept there under its first key, reused while it holds the same entry objects."},
    {"canonical", canonical, METH_O,
     "True when decode(encode(value)) gives value back as it is: exact dicts (str keys in "
     "sorted order, none starting with '$' or holding a lone surrogate) and lists of "
     "str, int, float, bool and None."},
    {"plain_in_order", plain_in_order, METH_O,
     "0 if a dict or list is not plain (see plain), 2 if it is and the keys of every dict "
     "inside it are exact str in ascending order, else 1."},
    {"in_order", in_order, METH_O,
     "True when a dict's keys are exact str in the order sorted() gives them."},
    {"sorted_keys", sorted_keys, METH_O,
     "sorted(mapping) of a dict of exact str keys (None if a key is not one), in one walk "
     "when all but a few are in order."},
    {"still_encodes", (PyCFunction)(void (*)(void))still_encodes, METH_FASTCALL,
     "True when value is canonical and encodes to exactly the canonical encoding given "
     "(False when unsure: a str JSON escapes, an int past 64 bits)."},
    {"seen_encoding", (PyCFunction)(void (*)(void))seen_encoding, METH_FASTCALL,
     "(value, encoding): still_encodes(value, encoding), as the Seen of the objects it "
     "went over (None: it said no)."},
    {"encode_seen", (PyCFunction)(void (*)(void))encode_seen, METH_FASTCALL,
     "(value, dumps, option, least, compact_below): (encoding, Seen or None) of a dict "
     "or list that reads back as it is; None when that does not apply."},
    {"all_still_encode", (PyCFunction)(void (*)(void))all_still_encode, METH_FASTCALL,
     "still_encodes() of every value of a dict, with its key's encoding in another (and "
     "a tuple of Wides: a value one of them vouches for is not walked)."},
    {"encode_wide", (PyCFunction)(void (*)(void))encode_wide, METH_FASTCALL,
     "(encodings, Wide) of a wide dict of values that read back as they are, encoded "
     "at once; None when that does not apply."},
    {"members_match", (PyCFunction)(void (*)(void))members_match, METH_FASTCALL,
     "True when bytes are exactly {\"key\":<encoding>,...} of the keys given, in their "
     "order, and a dict of their encodings."},
    {"digest_map", (PyCFunction)(void (*)(void))digest_map, METH_FASTCALL,
     "(entries, digest_type): the canonical encoding of the map tree of entries' digests; "
     "None when a key is not a plain str or a value not exactly digest_type."},
    {"iso_time", iso_time, METH_O,
     "iso_time(value): value.isoformat(), written in C for a naive or UTC datetime."},
    {"put_map", (PyCFunction)(void (*)(void))put_map, METH_FASTCALL,
     "put_map(entries, known, pending, held, digest_type, kinds, limits, compute): "
     "a small map tree and its values queued; (tree, objects, bytes) or None."},
    {"small_digest", (PyCFunction)(void (*)(void))small_digest, METH_FASTCALL,
     "small_digest(digest_type, tag, payload): BLAKE3 of tag + payload up to 1 KiB, else None."},
    {"new_digest", (PyCFunction)(void (*)(void))new_digest, METH_FASTCALL,
     "(digest_type, raw): an instance of digest_type with raw in its raw slot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pinrun.artifacts._speedups",
    "Optional C speedups for pinrun's canonical codec.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    crc_init();
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    json_stops_init();
    fill_hex_nibbles();
    raw_name = PyUnicode_InternFromString("raw");
    if (raw_name == NULL) {
        return NULL;
    }
    digest_key = PyUnicode_InternFromString("$digest");
    if (digest_key == NULL) {
        return NULL;
    }
    /* Interned: orjson matches its keywords' names by identity. */
    PyObject *option = PyUnicode_InternFromString("option");
    option_name = option != NULL ? PyTuple_Pack(1, option) : NULL;
    Py_XDECREF(option);
    if (option_name == NULL) {
        return NULL;
    }
    if (PyType_Ready(&InlineType) < 0) {
        return NULL;
    }
    PyObject *made = PyModule_Create(&module);
    if (made == NULL) {
        return NULL;
    }
    Py_INCREF(&InlineType);
    if (PyModule_AddObject(made, "Inline", (PyObject *)&InlineType) < 0) {
        Py_DECREF(&InlineType);
        Py_DECREF(made);
        return NULL;
    }
    if (add_seen(made) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}
