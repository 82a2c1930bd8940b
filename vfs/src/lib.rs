//! loft-vfs
