/* Stamp the whole lines of a chunk in one pass: the log path's hot loop (format.py).
 *
 * Why it exists (docs/decisions.md, "The log path, second pass"): in Python the cheapest
 * stamping is bytes.replace plus a join, two walks and two copies of every chunk, and it
 * wants a bytes object, so every read allocated a fresh buffer. Here the pump reads into
 * one buffer the daemon reuses, and one walk over the newlines copies each line behind
 * its stamp straight into the stored bytes, counting the lines and stopping before a line
 * over the length limit (which Python splits). The stored bytes come in pieces small
 * enough to come from the heap (format.py, PIECE_SIZE).
 *
 * Without a compiler the package installs without it, and format.py stamps in Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

/* stamp_lines(chunk, stamp, pending, max_line, max_size) -> (stored, lines, end, more) or None
 *
 * chunk: a buffer (bytes, or a view of the pump's read buffer); pending: the text of an
 * unfinished line from before it. stored is stamp + pending + chunk[:end] with stamp after
 * every newline but the last, at most max_size bytes: the whole lines of chunk, up to the
 * first that would not fit or is longer than max_line bytes. more: the rest, chunk[end:],
 * is still to be done (call again with no pending); otherwise it is the text after the last
 * newline, short enough to wait for the rest of its line. None when the first line is not
 * there (no newline) or is long: Python does those.
 */
static PyObject *
stamp_lines(PyObject *module, PyObject *args)
{
    Py_buffer chunk, stamp, pending;
    Py_ssize_t max_line, max_size;

    if (!PyArg_ParseTuple(args, "y*y*y*nn", &chunk, &stamp, &pending, &max_line, &max_size))
        return NULL;

    PyObject *result = NULL;
    const char *data = chunk.buf;
    const char *stop = data + chunk.len;

    /* Room for as many lines as may fit: max_size, or less for a small chunk (a stamp per byte at most). */
    Py_ssize_t room = max_size;
    if (chunk.len < max_size && pending.len < max_size)
        room = Py_MIN(max_size, pending.len + chunk.len + stamp.len * (chunk.len + 1));
    PyObject *stored = PyBytes_FromStringAndSize(NULL, room);
    if (stored == NULL)
        goto done;

    /* One walk over the newlines: copy each line behind its stamp while it fits and is not long. */
    char *to = PyBytes_AS_STRING(stored);
    const char *line = data;
    const char *before = pending.buf;  /* the start of the first line, read before this chunk */
    Py_ssize_t before_len = pending.len;
    Py_ssize_t size = 0, lines = 0;
    int stopped = 0;  /* at a full piece or a long line: the rest of the chunk is not done */
    for (const char *newline; (newline = memchr(line, '\n', stop - line)) != NULL; line = newline + 1) {
        Py_ssize_t length = newline + 1 - line;
        if (before_len + length - 1 > max_line || size + stamp.len + before_len + length > room) {
            stopped = 1;
            break;
        }
        memcpy(to, stamp.buf, stamp.len);
        memcpy(to + stamp.len, before, before_len);
        memcpy(to + stamp.len + before_len, line, length);
        to += stamp.len + before_len + length;
        size += stamp.len + before_len + length;
        before_len = 0;
        lines++;
    }
    if (lines == 0) {
        Py_DECREF(stored);
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&stored, size) < 0)
        goto done;
    int more = stopped || stop - line > max_line;
    result = Py_BuildValue("NnnO", stored, lines, line - data, more ? Py_True : Py_False);

done:
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&stamp);
    PyBuffer_Release(&pending);
    return result;
}

static PyMethodDef methods[] = {
    {"stamp_lines", stamp_lines, METH_VARARGS,
     "stamp_lines(chunk, stamp, pending, max_line, max_size) -> (stored, lines, end, more) or None\n\n"
     "stamp + pending + chunk[:end] with stamp after each newline but the last, at most max_size\n"
     "bytes, stopping before a line over max_line bytes; more: chunk[end:] is still to be done.\n"
     "None when the first line has no newline or is long."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "keplerd.logs._stamp",
    "Stamp the whole lines of a chunk of service output in one copy.", -1, methods,
};

PyMODINIT_FUNC PyInit__stamp(void)
{
    return PyModule_Create(&module_definition);
}
