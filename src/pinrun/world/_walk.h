/* code_state's walk in C (_walk.c), added to pinrun.world._speedups. */
#ifndef PINRUN_WORLD_WALK_H
#define PINRUN_WORLD_WALK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* configure_walk(by_identity, import_machinery, flow, opaque_error, most_items, most_depth):
 * code_state's tables, set once before any walk. */
PyObject *configure_walk(PyObject *module, PyObject *args);

/* Adds the Walker type to the module: 0, or -1 with an exception set. */
int add_walker(PyObject *module);

#endif
