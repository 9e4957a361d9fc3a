//! Example tests for cvtest: one per capability.
