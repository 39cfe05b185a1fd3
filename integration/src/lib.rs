//! Real-kernel tests live in tests/; see README.
