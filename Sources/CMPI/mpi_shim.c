// Open MPI through dlopen. The handles MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are, in Open MPI's ABI,
// the addresses of the library's global objects (ompi_mpi_comm_world, ...), so dlsym yields them.
#include "mpi_shim.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef void *handle;
typedef int (*init_thread_f)(int *, char ***, int, int *);
typedef int (*comm_int_f)(handle, int *);
typedef int (*allreduce_f)(const void *, void *, int, handle, handle, handle);
typedef int (*abort_f)(handle, int);
typedef int (*finalize_f)(void);

#define IN_PLACE ((void *)1)
#define THREAD_FUNNELED 1
#define MAX_COUNT ((size_t)1 << 30)

static struct {
    init_thread_f init_thread;
    comm_int_f comm_rank, comm_size;
    allreduce_f allreduce;
    abort_f abort;
    finalize_f finalize;
    handle world, float32, float64, uint64, sum, min, max;
} mpi;

int xmpi_init(int *rank, int *size, char *error, size_t error_size) {
    void *library = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
    if (!library) library = dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    if (!library) {
        snprintf(error, error_size, "cannot load Open MPI's libmpi.so.40 (%s); install openmpi-bin", dlerror());
        return 1;
    }
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&mpi.init_thread, "MPI_Init_thread"}, {(void **)&mpi.comm_rank, "MPI_Comm_rank"},
        {(void **)&mpi.comm_size, "MPI_Comm_size"}, {(void **)&mpi.allreduce, "MPI_Allreduce"},
        {(void **)&mpi.abort, "MPI_Abort"},
        {(void **)&mpi.finalize, "MPI_Finalize"}, {&mpi.world, "ompi_mpi_comm_world"},
        {&mpi.float32, "ompi_mpi_float"}, {&mpi.float64, "ompi_mpi_double"}, {&mpi.uint64, "ompi_mpi_uint64_t"},
        {&mpi.sum, "ompi_mpi_op_sum"}, {&mpi.min, "ompi_mpi_op_min"}, {&mpi.max, "ompi_mpi_op_max"},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(library, symbols[i].name);
        if (!*symbols[i].slot) {
            snprintf(error, error_size, "libmpi has no symbol %s: not Open MPI 4 or later", symbols[i].name);
            return 1;
        }
    }
    int provided = 0;
    if (mpi.init_thread(NULL, NULL, THREAD_FUNNELED, &provided) != 0) {
        snprintf(error, error_size, "MPI_Init_thread failed");
        return 1;
    }
    if (mpi.comm_rank(mpi.world, rank) != 0 || mpi.comm_size(mpi.world, size) != 0) {
        snprintf(error, error_size, "MPI_Comm_rank/MPI_Comm_size failed");
        return 1;
    }
    return 0;
}

/// MPI counts are ints: large buffers go in pieces of at most 2^30 elements.
static int allreduce(void *buffer, size_t count, size_t width, handle type, handle op) {
    for (size_t done = 0; done < count; done += MAX_COUNT) {
        size_t n = count - done < MAX_COUNT ? count - done : MAX_COUNT;
        int status = mpi.allreduce(IN_PLACE, (char *)buffer + done * width, (int)n, type, op, mpi.world);
        if (status != 0) return status;
    }
    return 0;
}

int xmpi_allreduce_sum_float(float *buffer, size_t count) { return allreduce(buffer, count, 4, mpi.float32, mpi.sum); }
int xmpi_allreduce_sum_double(double *buffer, size_t count) { return allreduce(buffer, count, 8, mpi.float64, mpi.sum); }
int xmpi_allreduce_min_u64(uint64_t *buffer, size_t count) { return allreduce(buffer, count, 8, mpi.uint64, mpi.min); }
int xmpi_allreduce_max_u64(uint64_t *buffer, size_t count) { return allreduce(buffer, count, 8, mpi.uint64, mpi.max); }

void xmpi_abort(int code) { mpi.abort(mpi.world, code); }
int xmpi_finalize(void) { return mpi.finalize(); }

static char termination_message[160];

static void on_terminate(int signal_number) {
    (void)signal_number;
    ssize_t written = write(STDERR_FILENO, termination_message, strlen(termination_message));
    (void)written;
    _exit(143);
}

void xmpi_report_termination(int rank) {
    snprintf(termination_message, sizeof termination_message,
             "xtrain rank %d: stopped by mpirun (another rank failed or the job was cancelled)\n", rank);
    signal(SIGTERM, on_terminate);
}
