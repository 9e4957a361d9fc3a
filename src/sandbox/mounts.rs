//! The mount plan, computed in the parent before clone.
