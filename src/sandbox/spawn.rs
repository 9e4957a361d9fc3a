//! Cloning the init process, in the parent.
