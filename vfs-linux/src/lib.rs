//! loft-vfs-linux
