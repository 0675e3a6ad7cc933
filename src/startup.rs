//! Builds the application from settings; used by `main` and by the integration tests.
