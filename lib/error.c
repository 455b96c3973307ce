/* Error reporting helpers: fill a caller-owned pyheap_error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

int pyheap_err_set(pyheap_error *err, pyheap_errcode code, int sys_errno,
                   uint64_t addr, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        err->sys_errno = sys_errno;
        err->addr = addr;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int pyheap_err_remote(pyheap_error *err, int sys_errno, pid_t pid,
                      uint64_t addr, size_t len)
{
    switch (sys_errno) {
    case ESRCH:
        return pyheap_err_set(err, PYHEAP_E_GONE, sys_errno, addr,
                              "process %d has exited", (int)pid);
    case EPERM:
    case EACCES:
        return pyheap_err_set(err, PYHEAP_E_PERM, sys_errno, addr,
                              "not allowed to read the memory of process %d (%s): "
                              "run pyheap as the process's user where "
                              "/proc/sys/kernel/yama/ptrace_scope allows it, "
                              "or as root / with CAP_SYS_PTRACE",
                              (int)pid, strerror(sys_errno));
    case ENOMEM:
        return pyheap_err_set(err, PYHEAP_E_NOMEM, sys_errno, addr,
                              "out of memory reading %zu bytes at 0x%llx in process %d",
                              len, (unsigned long long)addr, (int)pid);
    default:
        return pyheap_err_set(err, PYHEAP_E_READ, sys_errno, addr,
                              "cannot read %zu bytes at 0x%llx in process %d: %s",
                              len, (unsigned long long)addr, (int)pid,
                              strerror(sys_errno));
    }
}

const char *pyheap_errcode_name(pyheap_errcode code)
{
    switch (code) {
    case PYHEAP_OK: return "ok";
    case PYHEAP_E_NOPROC: return "no_process";
    case PYHEAP_E_GONE: return "gone";
    case PYHEAP_E_PERM: return "permission";
    case PYHEAP_E_NOTPYTHON: return "not_python";
    case PYHEAP_E_UNSUPPORTED: return "unsupported";
    case PYHEAP_E_OFFSETS: return "offsets";
    case PYHEAP_E_READ: return "read";
    case PYHEAP_E_CORRUPT: return "corrupt";
    case PYHEAP_E_NOMEM: return "no_memory";
    case PYHEAP_E_IO: return "io";
    case PYHEAP_E_INVAL: return "invalid";
    case PYHEAP_E_NOTFOUND: return "not_found";
    }
    return "unknown";
}
