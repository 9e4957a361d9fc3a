//! A synchronous rtnetlink socket, optionally opened inside another network namespace.
