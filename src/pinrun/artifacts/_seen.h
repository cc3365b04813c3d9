/* Seen (_seen.c): the containers a plain value was made of when its encoding was checked
 * or made, each with what it held then, kept to tell later, by identity alone, that it
 * is still that value. Added to pinrun.artifacts._speedups; the walks that fill a
 * SeenLog are in _speedups.c. */
#ifndef PINRUN_ARTIFACTS_SEEN_H
#define PINRUN_ARTIFACTS_SEEN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* CPython 3.11 to 3.13 give every dict a version tag that changes whenever the dict
 * does (PEP 509; 3.12 deprecated the field, 3.14 drops it): a dict whose tag is the
 * one seen holds the very keys and values it held. Elsewhere each of its members is
 * kept and compared instead. */
/* Not in a free-threaded build either: another thread may change a dict while it is
 * compared there. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_LIMITED_API) \
    && !defined(Py_GIL_DISABLED)
#define SEEN_DICT_TAGS 1
#else
#define SEEN_DICT_TAGS 0
#endif

/* How a container was seen (the first word of its record). */
enum {
    SEEN_BY_TAG = 1,      /* a dict, by its version tag (the second word) */
    SEEN_BY_MEMBERS = 2,  /* a dict, by its keys and values (the second word: their count) */
    SEEN_LIST = 3,        /* a list, by its items (the second word: their count) */
};

/* What a walk records, container by container: the container (objects), two words
 * (how it was seen, and its tag or size), then, unless seen by its tag, its members'
 * objects (a dict's key and value, a list's item), all of them before any container
 * inside it is recorded. Each object is a new reference. failed: an allocation failed
 * (the walk goes on; no Seen is made of the log). */
typedef struct {
    PyObject **objects;
    Py_ssize_t count, capacity;
    uint64_t *words;
    Py_ssize_t word_count, word_capacity;
    int failed;
} SeenLog;

/* Grow one of the log's arrays to hold at least more entries besides its own; 0, or -1
 * (and failed set) when memory ran out. */
int seen_grow(SeenLog *log, int words, Py_ssize_t more);

/* Make room for more objects: seen_push may then record that many. 0, or -1 (failed). */
static inline int seen_reserve(SeenLog *log, Py_ssize_t more)
{
    return log->capacity - log->count >= more ? 0 : seen_grow(log, 0, more);
}

/* Record object (a new reference is taken), where room was made (seen_reserve). */
static inline void seen_push(SeenLog *log, PyObject *object)
{
    Py_INCREF(object);
    log->objects[log->count++] = object;
}

/* Record a container: how it is seen, and its tag or size. 0, or -1 (failed). */
static inline int seen_container(SeenLog *log, PyObject *container, uint64_t how,
                                 uint64_t word)
{
    if (seen_reserve(log, 1) < 0 || (log->word_capacity - log->word_count < 2
                                     && seen_grow(log, 1, 2) < 0)) {
        return -1;
    }
    seen_push(log, container);
    log->words[log->word_count++] = how;
    log->words[log->word_count++] = word;
    return 0;
}

#if SEEN_DICT_TAGS
/* The dict's version tag, when it is a combined table (a split one, an instance's
 * __dict__, may be written through its object: seen by its members); else 0 (no tag
 * is 0: a dict's is set from a global counter that starts past it). */
static inline uint64_t seen_dict_tag(PyObject *dict)
{
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    PyDictObject *made = (PyDictObject *)dict;
    return made->ma_values == NULL ? made->ma_version_tag : 0;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
}
#else
static inline uint64_t seen_dict_tag(PyObject *dict)
{
    (void)dict;
    return 0;
}
#endif

/* Record a dict: by its tag when it has one, else by its members, which the caller then
 * records (all of them, key then value, before any container inside). 1 when the
 * members are to be recorded, 0 when not, -1 (failed) when memory ran out. */
static inline int seen_dict(SeenLog *log, PyObject *dict)
{
    uint64_t tag = seen_dict_tag(dict);
    if (tag != 0) {
        return seen_container(log, dict, SEEN_BY_TAG, tag);
    }
    if (seen_container(log, dict, SEEN_BY_MEMBERS, (uint64_t)PyDict_GET_SIZE(dict)) < 0
            || seen_reserve(log, 2 * PyDict_GET_SIZE(dict)) < 0) {
        return -1;
    }
    return 1;
}

/* Record a list and its items (before any container inside it). 0, or -1 (failed). */
static inline int seen_list(SeenLog *log, PyObject *list)
{
    Py_ssize_t size = PyList_GET_SIZE(list);
    if (seen_container(log, list, SEEN_LIST, (uint64_t)size) < 0
            || seen_reserve(log, size) < 0) {
        return -1;
    }
    for (Py_ssize_t index = 0; index < size; index++) {
        seen_push(log, PyList_GET_ITEM(list, index));
    }
    return 0;
}

/* Drop what the log holds (it may be used again). */
void seen_clear(SeenLog *log);

/* A Seen of what the log holds, for encoding (bytes; a new reference is taken); the
 * log is emptied. NULL with an exception set when it cannot be made (the log failed,
 * or memory ran out). */
PyObject *seen_from_log(SeenLog *log, PyObject *encoding);

/* A Wide of what the log holds (see _seen.c): the log must hold outputs first, then the
 * containers inside its values, then encodings; the log is emptied. NULL with an
 * exception set when it cannot be made. */
PyObject *wide_from_log(SeenLog *log, PyObject *outputs, PyObject *encodings);

/* When wide is a Wide whose containers all hold what they held: 1, with *outputs and
 * *encodings set to its dicts (borrowed: the Wide holds them). 0 otherwise. No Python
 * code runs. */
int wide_unchanged(PyObject *wide, PyObject **outputs, PyObject **encodings);

/* Adds the Seen and Wide types to the module: 0, or -1 with an exception set. */
int add_seen(PyObject *module);

#endif
