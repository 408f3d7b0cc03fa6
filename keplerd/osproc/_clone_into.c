/* Start a program straight into a cgroup: clone3(CLONE_INTO_CGROUP | CLONE_VM), then exec.
 *
 * Why it exists (docs/decisions.md, "Spawning into the cgroup"):
 * - Moving the daemon into a service's cgroup.procs before fork_exec and back after takes
 *   the kernel's cgroup threadgroup lock for writing twice per spawn, which may wait for
 *   an RCU grace period. A child cloned into its cgroup takes it only for reading, and the
 *   daemon never leaves its own cgroup.
 * - fork_exec's vfork holds the daemon until the child has exec'd. On a busy machine the
 *   new child waits for a CPU first: 3-7 ms a spawn, the daemon idle meanwhile. This child
 *   shares the daemon's memory (no copy of its page tables) without holding it: the
 *   daemon goes on at once and learns of the exec from the error pipe's EOF, as before.
 *
 * The child does what the standard library's _posixsubprocess does for keplerd's
 * arguments (close_fds, restore_signals, start_new_session, a umask, no preexec_fn), with
 * raw system calls only: it runs beside the daemon on the daemon's memory, so it must not
 * run Python, allocate, take a lock, or even set errno. It reads only its own mapping
 * (stack, arguments, environment), which the daemon unmaps once the exec is done. A
 * failure is reported on the exec error pipe in _posixsubprocess's format
 * ("OSError:<hex errno>:<where>"), which process.py reads.
 *
 * x86_64 only for now (the clone3 entry and the raw system calls are a few lines of
 * assembly per architecture); elsewhere, and where the kernel lacks clone3 or
 * CLONE_INTO_CGROUP (Linux < 5.7, or a seccomp filter that refuses it), keplerd falls
 * back on fork_exec from within the cgroup.
 */

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__linux__)
#define HAVE_CLONE_INTO 1
#else
#define HAVE_CLONE_INTO 0
#endif

#if HAVE_CLONE_INTO

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* struct clone_args of linux/sched.h (v2, with the cgroup field: 88 bytes). */
struct kepler_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

/* long kepler_clone3(struct kepler_clone_args *args, size_t size, int (*fn)(void *), void *arg)
 * returns the child's pid, or -errno. The child starts on the stack the arguments name and
 * runs fn(arg), then exit(2)s with its result: the same entry as glibc's private __clone3. */
long kepler_clone3(struct kepler_clone_args *args, size_t size, int (*fn)(void *), void *arg);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".type kepler_clone3, @function\n"
    "kepler_clone3:\n"
    "    mov %rcx, %r8\n"          /* arg: r8 and rdx (fn) survive the syscall */
    "    mov $435, %eax\n"         /* SYS_clone3 */
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jz 1f\n"
    "    ret\n"                    /* the daemon: the pid or -errno */
    "1:  xor %ebp, %ebp\n"         /* the child, on its own stack: the outermost frame */
    "    and $-16, %rsp\n"
    "    mov %r8, %rdi\n"
    "    call *%rdx\n"
    "    mov %rax, %rdi\n"
    "    mov $60, %eax\n"          /* SYS_exit */
    "    syscall\n"
    "    hlt\n"
    ".size kepler_clone3, .-kepler_clone3\n");

/* One raw system call: the child shares the daemon's memory, thread-local errno included, while
 * the daemon runs on, so it must not go through libc (which would write errno under it). */
static inline long raw_syscall(long number, long a1, long a2, long a3, long a4)
{
    long result;
    register long r10 __asm__("r10") = a4;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10)
                     : "rcx", "r11", "memory");
    return result;
}

/* The kernel's struct sigaction for rt_sigaction on x86_64, and its 64-bit signal set. */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

enum { CHILD_STACK_SIZE = 64 * 1024, GUARD_SIZE = 4096, KERNEL_SIGSET_SIZE = 8 };

enum { MAX_LIMITS = 8, MAX_GROUPS = 65536 };

/* What the child needs, copied into one mapping with its stack. The daemon does not wait for the
 * exec (no CLONE_VFORK: under load the child may wait milliseconds for a CPU, and the daemon
 * would wait with it), so nothing the child reads may be freed or changed until it has exec'd:
 * the mapping is the daemon's to unmap only once the exec error pipe reads EOF (release()). */
struct child_plan {
    char **argv;
    char **envp;
    const char *executable;
    const char *cwd;
    int stdin_fd, stdout_fd, stderr_fd, errpipe;
    unsigned int umask;
    uint64_t mask;
    int tty;                     /* stdin becomes the controlling terminal */
    int limit_count;             /* rlimits, set in this order, while still root */
    int limit_resources[MAX_LIMITS];
    uint64_t limit_values[MAX_LIMITS];
    int switch_user;             /* then become uid/gid with these supplementary groups */
    unsigned int uid, gid;
    long group_count;
    unsigned int *groups;
};

static void write_all(int fd, const char *data, size_t length)
{
    while (length > 0) {
        long written = raw_syscall(SYS_write, fd, (long)data, (long)length, 0);
        if (written == -EINTR)
            continue;
        if (written <= 0)
            return;
        data += written;
        length -= (size_t)written;
    }
}

/* Tell the daemon why the child did not exec ("<kind>:<hex errno>:<where>") and end it. */
static void report_and_exit_as(int errpipe, const char *kind, long result, const char *where)
{
    char text[64];
    char digits[16];
    size_t length = 0;
    while (kind[length] != '\0' && length < 40) {
        text[length] = kind[length];
        length++;
    }
    text[length++] = ':';
    unsigned long number = (unsigned long)-result;
    int count = 0;
    do {
        digits[count++] = "0123456789abcdef"[number % 16];
        number /= 16;
    } while (number > 0 && count < (int)sizeof digits);
    while (count > 0)
        text[length++] = digits[--count];
    text[length++] = ':';
    write_all(errpipe, text, length);
    length = 0;
    while (where[length] != '\0')
        length++;
    write_all(errpipe, where, length);
    for (;;)
        raw_syscall(SYS_exit, 255, 0, 0, 0);
}

/* A failure of the child's own set-up, as _posixsubprocess reports one. */
static void report_and_exit(int errpipe, long result, const char *where)
{
    report_and_exit_as(errpipe, "OSError", result, where);
}

/* A failure of one of keplerd's steps (terminal, limits, user): process.py names the step. */
static void step_failed(int errpipe, long result, const char *step)
{
    report_and_exit_as(errpipe, "KeplerStep", result, step);
}

/* What a service asks beyond a plain exec (SPEC §12): its terminal, its rlimits (first, while
 * still root, so they may go past the daemon's own hard limits; the address space last, as
 * the plan orders them), then its user: groups, gid, uid; then its working directory again,
 * as that user, so that one it may not enter fails it instead of leaving it stranded. */
static void apply_steps(const struct child_plan *plan)
{
    static const char *const limit_steps[MAX_LIMITS] = {
        "limit:0", "limit:1", "limit:2", "limit:3", "limit:4", "limit:5", "limit:6", "limit:7"};
    long result;
    if (plan->tty && (result = raw_syscall(SYS_ioctl, 0, TIOCSCTTY, 0, 0)) < 0)
        step_failed(plan->errpipe, result, "tty");
    for (int index = 0; index < plan->limit_count; index++) {
        uint64_t limit[2] = {plan->limit_values[index], plan->limit_values[index]};
        result = raw_syscall(SYS_prlimit64, 0, plan->limit_resources[index], (long)limit, 0);
        if (result < 0)
            step_failed(plan->errpipe, result, limit_steps[index]);
    }
    if (!plan->switch_user)
        return;
    if ((result = raw_syscall(SYS_setgroups, plan->group_count, (long)plan->groups, 0, 0)) < 0 ||
        (result = raw_syscall(SYS_setresgid, plan->gid, plan->gid, plan->gid, 0)) < 0 ||
        (result = raw_syscall(SYS_setresuid, plan->uid, plan->uid, plan->uid, 0)) < 0)
        step_failed(plan->errpipe, result, "user");
    if ((result = raw_syscall(SYS_chdir, (long)plan->cwd, 0, 0, 0)) < 0)
        step_failed(plan->errpipe, result, "cwd");
}

/* The daemon's handlers would run on its memory: every caught signal goes back to its default
 * before the mask is lifted (ignored ones stay ignored, as exec keeps them). */
static void reset_signal_handlers(void)
{
    struct kernel_sigaction default_action = {.handler = SIG_DFL};
    for (int number = 1; number <= 64; number++) {
        struct kernel_sigaction current;
        if (number == SIGKILL || number == SIGSTOP)
            continue;
        if (raw_syscall(SYS_rt_sigaction, number, 0, (long)&current, KERNEL_SIGSET_SIZE) < 0)
            continue;
        if (current.handler == (void *)SIG_IGN || current.handler == (void *)SIG_DFL)
            continue;
        raw_syscall(SYS_rt_sigaction, number, (long)&default_action, 0, KERNEL_SIGSET_SIZE);
    }
    /* restore_signals: Python ignores these two; a program expects them at their default. */
    raw_syscall(SYS_rt_sigaction, SIGPIPE, (long)&default_action, 0, KERNEL_SIGSET_SIZE);
    raw_syscall(SYS_rt_sigaction, SIGXFSZ, (long)&default_action, 0, KERNEL_SIGSET_SIZE);
}

/* Put *fd* on *target* (0, 1 or 2), kept open across exec; 0 or -errno. */
static long place_fd(int fd, int target)
{
    if (fd != target) {
        long result = raw_syscall(SYS_dup2, fd, target, 0, 0);
        return result < 0 ? result : 0;
    }
    long flags = raw_syscall(SYS_fcntl, fd, F_GETFD, 0, 0);
    return flags < 0 ? flags : raw_syscall(SYS_fcntl, fd, F_SETFD, flags & ~FD_CLOEXEC, 0);
}

/* close_fds: everything past 2 is closed by the exec (the error pipe must stay open until then). */
static long close_at_exec(int errpipe)
{
    /* As marks, where the kernel can (5.11): exec closes them after it has let go of the memory. */
    if (raw_syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC, 0) == 0)
        return 0;
    long result = errpipe > 3 ? raw_syscall(SYS_close_range, 3, errpipe - 1, 0, 0) : 0;
    if (result == 0)
        result = raw_syscall(SYS_close_range, errpipe + 1, ~0U, 0, 0);
    /* No close_range (Linux 5.7 and 5.8 have clone3 into a cgroup without it): the daemon's fds
     * are close-on-exec from their creation (PEP 446), which is what this call made sure of. */
    return result == -ENOSYS ? 0 : result;
}

static int child_main(void *argument)
{
    const struct child_plan *plan = argument;
    int stdout_fd = plan->stdout_fd, stderr_fd = plan->stderr_fd, errpipe = plan->errpipe;
    long result;

    reset_signal_handlers();
    /* An fd already sitting on 0 or 1 would be overwritten by the dup2 before it is used. */
    if (stdout_fd == 0 && (stdout_fd = (int)raw_syscall(SYS_dup, stdout_fd, 0, 0, 0)) < 0)
        report_and_exit(errpipe, stdout_fd, "noexec");
    while (stderr_fd == 0 || stderr_fd == 1)
        if ((stderr_fd = (int)raw_syscall(SYS_dup, stderr_fd, 0, 0, 0)) < 0)
            report_and_exit(errpipe, stderr_fd, "noexec");
    if ((result = place_fd(plan->stdin_fd, 0)) < 0 || (result = place_fd(stdout_fd, 1)) < 0 ||
        (result = place_fd(stderr_fd, 2)) < 0)
        report_and_exit(errpipe, result, "noexec");
    if ((result = raw_syscall(SYS_chdir, (long)plan->cwd, 0, 0, 0)) < 0)
        report_and_exit(errpipe, result, "noexec:chdir");
    raw_syscall(SYS_umask, plan->umask, 0, 0, 0);
    if ((result = raw_syscall(SYS_setsid, 0, 0, 0, 0)) < 0)
        report_and_exit(errpipe, result, "noexec");
    apply_steps(plan);
    if ((result = close_at_exec(errpipe)) < 0)
        report_and_exit(errpipe, result, "noexec");
    raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&plan->mask, 0, KERNEL_SIGSET_SIZE);
    result = raw_syscall(SYS_execve, (long)plan->executable, (long)plan->argv, (long)plan->envp, 0);
    report_and_exit(errpipe, result, "");
    return 255;
}

/* -- the daemon's side ------------------------------------------------------------------ */

/* The mapping a child runs on until its exec: a guard page, its stack, then its plan. */
typedef struct {
    PyObject_HEAD
    char *area;
    size_t size;
} Pending;

static void pending_unmap(Pending *pending)
{
    if (pending->area != NULL) {
        munmap(pending->area, pending->size);
        pending->area = NULL;
    }
}

static PyObject *pending_release(PyObject *self, PyObject *unused)
{
    (void)unused;
    pending_unmap((Pending *)self);
    Py_RETURN_NONE;
}

static void pending_dealloc(PyObject *self)
{
    /* Not released: the child may still run on the mapping (the daemon gave up waiting, a greenlet
     * was killed), so it is left mapped; 64 KiB lost, never a child on freed memory. */
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef pending_methods[] = {
    {"release", pending_release, METH_NOARGS,
     "Unmap the child's stack and plan: call only once its exec error pipe has read EOF."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "keplerd.osproc._clone_into.Pending",
    .tp_basicsize = sizeof(Pending),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A cloned child's stack and plan, mapped until it has exec'd.",
    .tp_dealloc = pending_dealloc,
    .tp_methods = pending_methods,
};

/* Byte strings to copy into the mapping: the items of a list of bytes (no NUL inside). */
static int measure_strings(PyObject *items, const char *what, size_t *bytes)
{
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, index);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must hold bytes", what);
            return -1;
        }
        if ((Py_ssize_t)strlen(PyBytes_AS_STRING(item)) != PyBytes_GET_SIZE(item)) {
            PyErr_Format(PyExc_ValueError, "embedded null byte");
            return -1;
        }
        *bytes += (size_t)PyBytes_GET_SIZE(item) + 1 + sizeof(char *);
    }
    *bytes += sizeof(char *);  /* the NULL at the end of the array */
    return 0;
}

/* Copy the strings to *cursor* and the array of pointers to them to *array*; return the new cursor. */
static char *copy_strings(PyObject *items, char **array, char *cursor)
{
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, index);
        size_t length = (size_t)PyBytes_GET_SIZE(item) + 1;
        memcpy(cursor, PyBytes_AS_STRING(item), length);
        array[index] = cursor;
        cursor += length;
    }
    array[count] = NULL;
    return cursor;
}

static size_t round_up(size_t size, size_t unit) { return (size + unit - 1) / unit * unit; }

/* Map guard + stack + plan, and fill the plan in; NULL with an exception set. */
static Pending *map_plan(PyObject *argv, PyObject *envp, const char *executable, const char *cwd,
                         Py_ssize_t group_count, struct child_plan **plan_out)
{
    size_t strings = strlen(executable) + 1 + strlen(cwd) + 1 + (size_t)group_count * sizeof(unsigned int) + 8;
    if (measure_strings(argv, "argv", &strings) == -1 || measure_strings(envp, "env", &strings) == -1)
        return NULL;
    Pending *pending = PyObject_New(Pending, &PendingType);
    if (pending == NULL)
        return NULL;
    pending->size = round_up(GUARD_SIZE + CHILD_STACK_SIZE + sizeof(struct child_plan) + strings, 4096);
    pending->area = mmap(NULL, pending->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (pending->area == MAP_FAILED) {
        pending->area = NULL;
        Py_DECREF(pending);
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    /* An overflow faults on the guard page instead of writing over the daemon's heap. */
    mprotect(pending->area, GUARD_SIZE, PROT_NONE);
    struct child_plan *plan = (struct child_plan *)(pending->area + GUARD_SIZE + CHILD_STACK_SIZE);
    char **arrays = (char **)(plan + 1);
    plan->argv = arrays;
    plan->envp = arrays + PySequence_Fast_GET_SIZE(argv) + 1;
    char *cursor = (char *)(plan->envp + PySequence_Fast_GET_SIZE(envp) + 1);
    cursor = copy_strings(argv, plan->argv, cursor);
    cursor = copy_strings(envp, plan->envp, cursor);
    plan->executable = memcpy(cursor, executable, strlen(executable) + 1);
    cursor += strlen(executable) + 1;
    plan->cwd = memcpy(cursor, cwd, strlen(cwd) + 1);
    cursor += strlen(cwd) + 1;
    plan->groups = (unsigned int *)round_up((size_t)cursor, sizeof(unsigned int));
    *plan_out = plan;
    return pending;
}

/* Fill in the steps of the plan: limits ((resource, value) pairs) and identity ((uid, gid, groups) or None). */
static int plan_steps(struct child_plan *plan, int tty, PyObject *limits, PyObject *identity, PyObject *groups)
{
    plan->tty = tty;
    plan->limit_count = (int)PySequence_Fast_GET_SIZE(limits);
    for (int index = 0; index < plan->limit_count; index++) {
        unsigned long long value;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(limits, index), "iK", &plan->limit_resources[index], &value))
            return -1;
        plan->limit_values[index] = value;
    }
    plan->switch_user = identity != Py_None;
    if (!plan->switch_user)
        return 0;
    PyObject *ignored;
    if (!PyArg_ParseTuple(identity, "IIO", &plan->uid, &plan->gid, &ignored))
        return -1;
    plan->group_count = PySequence_Fast_GET_SIZE(groups);
    for (Py_ssize_t index = 0; index < plan->group_count; index++) {
        unsigned long group = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(groups, index));
        if (group == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        plan->groups[index] = (unsigned int)group;
    }
    return 0;
}

static PyObject *clone_child(Pending *pending, struct child_plan *plan, int cgroup_fd)
{
    sigset_t all, old;
    struct kepler_clone_args clone_args;
    memset(&clone_args, 0, sizeof clone_args);
    clone_args.flags = CLONE_VM;
    if (cgroup_fd >= 0) {
        clone_args.flags |= CLONE_INTO_CGROUP;
        clone_args.cgroup = (uint64_t)cgroup_fd;
    }
    clone_args.exit_signal = SIGCHLD;
    clone_args.stack = (uint64_t)(uintptr_t)(pending->area + GUARD_SIZE);
    clone_args.stack_size = CHILD_STACK_SIZE;

    /* The child is born with every signal blocked: no handler of the daemon may run in it. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    memcpy(&plan->mask, &old, KERNEL_SIGSET_SIZE);
    long pid = kepler_clone3(&clone_args, sizeof clone_args, child_main, plan);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        pending_unmap(pending);  /* no child: nobody runs on it */
        errno = (int)-pid;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("lO", pid, (PyObject *)pending);
}

/* The groups of an identity ((uid, gid, groups) or None), as a fast sequence; NULL with an exception. */
static PyObject *identity_groups(PyObject *identity)
{
    if (identity == Py_None)
        return PyTuple_New(0);
    if (!PyTuple_Check(identity) || PyTuple_GET_SIZE(identity) != 3) {
        PyErr_SetString(PyExc_TypeError, "identity must be None or (uid, gid, groups)");
        return NULL;
    }
    PyObject *groups = PySequence_Fast(PyTuple_GET_ITEM(identity, 2), "groups must be a sequence");
    if (groups != NULL && PySequence_Fast_GET_SIZE(groups) > MAX_GROUPS) {
        Py_DECREF(groups);
        PyErr_SetString(PyExc_ValueError, "too many supplementary groups");
        return NULL;
    }
    return groups;
}

static PyObject *spawn_into(PyObject *module, PyObject *args)
{
    int cgroup_fd, tty;
    struct child_plan fds;
    const char *executable, *cwd;
    PyObject *argv_list, *env_list, *limit_list, *identity;
    PyObject *argv = NULL, *envp = NULL, *limits = NULL, *groups = NULL, *result = NULL;
    (void)module;
    if (!PyArg_ParseTuple(args, "iyOOyiiiiIpOO:spawn_into", &cgroup_fd, &executable, &argv_list, &env_list, &cwd,
                          &fds.stdin_fd, &fds.stdout_fd, &fds.stderr_fd, &fds.errpipe, &fds.umask,
                          &tty, &limit_list, &identity))
        return NULL;
    if ((argv = PySequence_Fast(argv_list, "argv must be a sequence")) == NULL ||
        (envp = PySequence_Fast(env_list, "env must be a sequence")) == NULL ||
        (limits = PySequence_Fast(limit_list, "limits must be a sequence")) == NULL ||
        (groups = identity_groups(identity)) == NULL)
        goto done;
    if (PySequence_Fast_GET_SIZE(limits) > MAX_LIMITS) {
        PyErr_SetString(PyExc_ValueError, "too many limits");
        goto done;
    }
    struct child_plan *plan = NULL;
    Pending *pending = map_plan(argv, envp, executable, cwd, PySequence_Fast_GET_SIZE(groups), &plan);
    if (pending == NULL)
        goto done;
    plan->stdin_fd = fds.stdin_fd;
    plan->stdout_fd = fds.stdout_fd;
    plan->stderr_fd = fds.stderr_fd;
    plan->errpipe = fds.errpipe;
    plan->umask = fds.umask;
    if (plan_steps(plan, tty, limits, identity, groups) == 0)
        result = clone_child(pending, plan, cgroup_fd);
    else
        pending_unmap(pending);
    Py_DECREF(pending);
done:
    Py_XDECREF(argv);
    Py_XDECREF(envp);
    Py_XDECREF(limits);
    Py_XDECREF(groups);
    return result;
}

#endif /* HAVE_CLONE_INTO */

static PyMethodDef methods[] = {
#if HAVE_CLONE_INTO
    {"spawn_into", spawn_into, METH_VARARGS,
     "spawn_into(cgroup_fd, executable, argv, env, cwd, stdin, stdout, stderr, errpipe, umask, tty, limits,\n"
     "           identity) -> (pid, pending)\n\n"
     "Start executable in a new session, inside the cgroup of cgroup_fd unless it is -1 (see the source).\n"
     "limits: (resource, value) pairs, set in order; identity: None or (uid, gid, groups).\n"
     "pending.release() once errpipe reads EOF; never before."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "keplerd.osproc._clone_into",
    "Spawn a child without Python between clone and exec, straight into its cgroup.", -1, methods,
};

PyMODINIT_FUNC PyInit__clone_into(void)
{
#if HAVE_CLONE_INTO
    if (PyType_Ready(&PendingType) < 0)
        return NULL;
#endif
    PyObject *module = PyModule_Create(&module_definition);
    if (module != NULL && PyModule_AddIntConstant(module, "AVAILABLE", HAVE_CLONE_INTO) == -1) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
