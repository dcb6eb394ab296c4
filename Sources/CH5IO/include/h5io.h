// A small, error-returning layer over HDF5's C API for checkpoints: Float32 datasets (chunked, with
// fletcher32 checksums that HDF5 verifies on every read) and string attributes on the root group.
// HDF5's own error printing is silenced; each call returns 0 on success and fills `error` otherwise.
#ifndef XTRAIN_H5IO_H
#define XTRAIN_H5IO_H

#include <stdint.h>

typedef int64_t xt_h5_file;

xt_h5_file xt_h5_create(const char *path, char *error, int error_size);
xt_h5_file xt_h5_open_read(const char *path, char *error, int error_size);
int xt_h5_close(xt_h5_file file);

// Writes a Float32 dataset at `name` (intermediate groups created), shape dims[0..rank).
int xt_h5_write_floats(xt_h5_file file, const char *name, const float *data, int rank, const int64_t *dims, char *error, int error_size);

// Reads the rank (into *rank) and dims (up to 8) of dataset `name`; returns non-zero if it is missing.
int xt_h5_shape(xt_h5_file file, const char *name, int *rank, int64_t *dims, char *error, int error_size);

// Reads a Float32 dataset of exactly `count` elements, checksums verified.
int xt_h5_read_floats(xt_h5_file file, const char *name, float *data, int64_t count, char *error, int error_size);

// A variable-length UTF-8 string attribute on the root group.
int xt_h5_write_string(xt_h5_file file, const char *name, const char *value, char *error, int error_size);

// Returns the attribute's length (without NUL) or -1 if missing; copies at most capacity-1 bytes.
int64_t xt_h5_read_string(xt_h5_file file, const char *name, char *value, int64_t capacity);

// Flushes the file's buffers to the operating system.
int xt_h5_flush(xt_h5_file file);

#endif
