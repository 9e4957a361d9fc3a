//! All `unsafe` and raw syscalls live here, each block with a `// SAFETY:` line. A raw fd becomes
//! an `OwnedFd` on the line it is born.
