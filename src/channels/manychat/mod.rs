//! ManyChat Dynamic Block endpoints answering in the v2 response format.
