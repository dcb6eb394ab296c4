#ifndef XTRAIN_MPI_SHIM_H
#define XTRAIN_MPI_SHIM_H

#include <stddef.h>
#include <stdint.h>

// Open MPI, loaded with dlopen only when a run is launched by mpirun: a plain run needs no MPI at all.
// Every function returns 0 on success; on failure it writes a message to `error` (NUL-terminated).

/// Loads libmpi.so.40 and initialises MPI (thread level FUNNELED); sets *rank and *size.
int xmpi_init(int *rank, int *size, char *error, size_t error_size);

/// In-place sum over all ranks of `count` floats.
int xmpi_allreduce_sum_float(float *buffer, size_t count);

/// In-place sum over all ranks of `count` doubles.
int xmpi_allreduce_sum_double(double *buffer, size_t count);

/// In-place minimum and maximum over all ranks of `count` unsigned 64-bit integers.
int xmpi_allreduce_min_u64(uint64_t *buffer, size_t count);
int xmpi_allreduce_max_u64(uint64_t *buffer, size_t count);

/// On SIGTERM (mpirun stopping the job because a rank died) write a line naming this rank, then exit.
void xmpi_report_termination(int rank);

/// Ends the whole job (every rank) with `code`.
void xmpi_abort(int code);

int xmpi_finalize(void);

#endif
