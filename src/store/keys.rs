//! Big-endian key encoding for the sled trees.
