#include "h5io.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(void) {
    static int done = 0;
    if (!done) {
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

static int fail(char *error, int size, const char *what, const char *name) {
    snprintf(error, size, "%s '%s' failed", what, name);
    return 1;
}

xt_h5_file xt_h5_create(const char *path, char *error, int error_size) {
    quiet();
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) fail(error, error_size, "creating HDF5 file", path);
    return file;
}

xt_h5_file xt_h5_open_read(const char *path, char *error, int error_size) {
    quiet();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) fail(error, error_size, "opening HDF5 file", path);
    return file;
}

int xt_h5_close(xt_h5_file file) { return H5Fclose(file) < 0; }

int xt_h5_flush(xt_h5_file file) { return H5Fflush(file, H5F_SCOPE_GLOBAL) < 0; }

int xt_h5_write_floats(xt_h5_file file, const char *name, const float *data, int rank, const int64_t *dims, char *error, int error_size) {
    hsize_t shape[8], chunk[8];
    int64_t count = 1;
    for (int i = 0; i < rank; i++) {
        shape[i] = (hsize_t)dims[i];
        count *= dims[i];
    }
    if (rank == 0 || count == 0) {
        // HDF5 chunks need a non-empty shape; store scalars and empty tensors as they are.
        rank = rank == 0 ? 1 : rank;
        if (dims == NULL || count == 0) shape[0] = (hsize_t)count;
    }
    // Chunks of whole rows, about 1M elements each.
    int64_t inner = 1;
    for (int i = 1; i < rank; i++) {
        chunk[i] = shape[i];
        inner *= (int64_t)shape[i];
    }
    int64_t rows = inner > 0 ? (1 << 20) / inner : 1;
    if (rows < 1) rows = 1;
    chunk[0] = (hsize_t)(rows < (int64_t)shape[0] ? rows : (int64_t)shape[0]);
    if (chunk[0] == 0) chunk[0] = 1;
    hid_t space = H5Screate_simple(rank, shape, NULL);
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    hid_t link = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(link, 1);
    if (count > 0) {
        H5Pset_chunk(create, rank, chunk);
        H5Pset_fletcher32(create);
    }
    hid_t set = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, link, create, H5P_DEFAULT);
    int status = set < 0 || (count > 0 && H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0);
    if (set >= 0) H5Dclose(set);
    H5Pclose(link);
    H5Pclose(create);
    H5Sclose(space);
    return status ? fail(error, error_size, "writing dataset", name) : 0;
}

int xt_h5_shape(xt_h5_file file, const char *name, int *rank, int64_t *dims, char *error, int error_size) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return fail(error, error_size, "finding dataset", name);
    hid_t set = H5Dopen2(file, name, H5P_DEFAULT);
    if (set < 0) return fail(error, error_size, "opening dataset", name);
    hid_t space = H5Dget_space(set);
    hsize_t shape[8];
    int n = H5Sget_simple_extent_ndims(space);
    if (n < 0 || n > 8) {
        H5Sclose(space);
        H5Dclose(set);
        return fail(error, error_size, "reading the shape of", name);
    }
    H5Sget_simple_extent_dims(space, shape, NULL);
    *rank = n;
    for (int i = 0; i < n; i++) dims[i] = (int64_t)shape[i];
    H5Sclose(space);
    H5Dclose(set);
    return 0;
}

int xt_h5_read_floats(xt_h5_file file, const char *name, float *data, int64_t count, char *error, int error_size) {
    hid_t set = H5Dopen2(file, name, H5P_DEFAULT);
    if (set < 0) return fail(error, error_size, "opening dataset", name);
    hid_t space = H5Dget_space(set);
    int64_t stored = (int64_t)H5Sget_simple_extent_npoints(space);
    int status = 0;
    if (stored != count) {
        snprintf(error, error_size, "dataset '%s' holds %lld elements, expected %lld", name, (long long)stored, (long long)count);
        status = 1;
    } else if (count > 0 && H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        snprintf(error, error_size, "reading dataset '%s' failed (checksum mismatch or corrupt file)", name);
        status = 1;
    }
    H5Sclose(space);
    H5Dclose(set);
    return status;
}

int xt_h5_write_string(xt_h5_file file, const char *name, const char *value, char *error, int error_size) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attribute = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int status = attribute < 0 || H5Awrite(attribute, type, &value) < 0;
    if (attribute >= 0) H5Aclose(attribute);
    H5Sclose(space);
    H5Tclose(type);
    return status ? fail(error, error_size, "writing attribute", name) : 0;
}

int64_t xt_h5_read_string(xt_h5_file file, const char *name, char *value, int64_t capacity) {
    if (H5Aexists(file, name) <= 0) return -1;
    hid_t attribute = H5Aopen(file, name, H5P_DEFAULT);
    if (attribute < 0) return -1;
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    char *text = NULL;
    int64_t length = -1;
    if (H5Aread(attribute, type, &text) >= 0 && text != NULL) {
        length = (int64_t)strlen(text);
        if (capacity > 0) {
            int64_t n = length < capacity - 1 ? length : capacity - 1;
            memcpy(value, text, (size_t)n);
            value[n] = 0;
        }
        H5free_memory(text);
    }
    H5Tclose(type);
    H5Aclose(attribute);
    return length;
}
