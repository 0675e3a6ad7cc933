//! The HTTP surface shared by all routes: health, admin, and the one error mapping.
