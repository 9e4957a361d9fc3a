//! The only code that runs in the child between clone and exec: async-signal-safe.
