//! loft-cache
