// HDF5's C API (Debian installs the serial build under hdf5/serial; pkg-config supplies the paths).
#include <hdf5.h>
