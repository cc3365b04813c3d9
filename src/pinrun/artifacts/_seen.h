/* Seen (_seen.c): the objects a plain value was made of when its encoding was checked
 * or made, kept to tell later, by identity alone, that it is still that value. Added to
 * pinrun.artifacts._speedups; the walks that fill a SeenLog are in _speedups.c. */
#ifndef PINRUN_ARTIFACTS_SEEN_H
#define PINRUN_ARTIFACTS_SEEN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* What a walk records: every object it visits, in order (a container, then each of
 * its members: a dict's key and value, a list's item), each a new reference; and the
 * size of each container, in the same order. failed: an allocation failed (the walk
 * goes on; no Seen is made of the log). */
typedef struct {
    PyObject **objects;
    Py_ssize_t count, capacity;
    Py_ssize_t *sizes;
    Py_ssize_t size_count, size_capacity;
    int failed;
} SeenLog;

/* Grow one of the log's arrays to hold at least more entries besides its own; 0, or -1
 * (and failed set) when memory ran out. */
int seen_grow(SeenLog *log, int sizes, Py_ssize_t more);

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

/* Record object (a new reference is taken). */
static inline void seen_object(SeenLog *log, PyObject *object)
{
    if (log->count == log->capacity && seen_grow(log, 0, 1) < 0) {
        return;
    }
    Py_INCREF(object);
    log->objects[log->count++] = object;
}

/* Record a container and its size. */
static inline void seen_container(SeenLog *log, PyObject *container, Py_ssize_t size)
{
    seen_object(log, container);
    if (log->size_count == log->size_capacity && seen_grow(log, 1, 1) < 0) {
        return;
    }
    log->sizes[log->size_count++] = size;
}

/* Drop what the log holds (it may be used again). */
void seen_clear(SeenLog *log);

/* A Seen of what the log holds, for encoding (bytes; a new reference is taken); the
 * log is emptied. NULL with an exception set when it cannot be made (the log failed,
 * or memory ran out). */
PyObject *seen_from_log(SeenLog *log, PyObject *encoding);

/* Adds the Seen type to the module: 0, or -1 with an exception set. */
int add_seen(PyObject *module);

#endif
