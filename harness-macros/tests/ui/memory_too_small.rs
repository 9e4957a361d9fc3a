use cvtest::cv_test;

// Below the 1M floor: the container's init could not even start.
#[cv_test(memory = "512K")]
fn too_small() {}

fn main() {}
